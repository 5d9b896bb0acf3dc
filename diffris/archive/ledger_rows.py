"""Ledger rows, what ``diffris archive status`` shows, and the per-job decision of a plan."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from diffris.archive.fingerprint import OutputFingerprint
from diffris.archive.inputs import InputIdentity
from diffris.archive.jobs import SceneJob
from diffris.archive.outputs import OutputCheck

__all__ = ["Action", "Decision", "JobStatus", "LedgerRow", "LedgerSummary", "decide"]


class JobStatus(enum.Enum):
    """Status of a ledger row."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Action(enum.Enum):
    """What a run does with a job."""

    RUN = "run"
    SKIP = "skip"
    GIVE_UP = "give-up"


@dataclass(frozen=True)
class Decision:
    """A planned job, what to do with it and why (e.g. ``"input changed"``)."""

    job: SceneJob
    action: Action
    reason: str


@dataclass(frozen=True)
class LedgerRow:
    """One row of the ``jobs`` table (columns as in :data:`SCHEMA`)."""

    key: str
    input: str
    output: str
    model_id: str
    prompt_hash: str
    options_hash: str
    input_size: int | None
    input_mtime_ns: int | None
    input_sha256: str | None
    digest: str
    status: str
    attempts: int
    failures: int
    interruptions: int
    error: str | None
    worker: str | None
    tiles: int | None
    seconds: float | None
    planned_at: float
    started_at: float | None
    finished_at: float | None
    run_id: int | None
    output_size: int | None = None
    output_mtime_ns: int | None = None
    output_checksum: str | None = None

    @property
    def identity(self) -> InputIdentity:
        return InputIdentity(self.input_size, self.input_mtime_ns, self.input_sha256)

    @property
    def output_fingerprint(self) -> OutputFingerprint | None:
        """What was recorded of the output when it was published; None before schema v2."""
        if self.output_size is None or self.output_mtime_ns is None:
            return None
        return OutputFingerprint(self.output_size, self.output_mtime_ns, self.output_checksum)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LedgerSummary:
    """What ``diffris archive status`` shows.

    Attributes:
        ledger: the database path.
        counts: rows per status, plus ``given_up`` (failed rows past the last run's retries).
        rows: the current row of every output (or every row with ``all_rows``), by output.
        last_run: the last run's record (``runs`` table) or None.
    """

    ledger: str
    counts: dict[str, int]
    rows: list[LedgerRow]
    last_run: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "counts": self.counts,
            "last_run": self.last_run,
            "rows": [row.to_dict() for row in self.rows],
        }


def decide(
    job: SceneJob,
    row: LedgerRow | None,
    retries: int,
    check_output: Callable[[SceneJob, OutputFingerprint | None], OutputCheck],
    *,
    adopt: bool,
) -> tuple[Decision, OutputFingerprint | None]:
    """What to do with a job given its ledger row, and an output fingerprint to record.

    Args:
        job: the planned job.
        row: its ledger row, or None.
        retries: a failed row is retried while its consecutive failures are <= ``retries``.
        check_output: whether a done job's output is still the one published.
        adopt: take a job without a row as done when its output passes ``check_output``
            (its tag and a full read): the ledger was just rebuilt.

    Returns:
        The decision, and a fingerprint to record for the row (or None).
    """
    if row is None:
        if adopt and (check := check_output(job, None)).problem is None:
            return Decision(job, Action.SKIP, "done (taken from its tag)"), check.fingerprint
        return Decision(job, Action.RUN, "new"), None
    if row.digest != job.digest:
        return Decision(job, Action.RUN, "input changed"), None
    if row.status == JobStatus.DONE.value:
        check = check_output(job, row.output_fingerprint)
        if check.problem is None:
            return Decision(job, Action.SKIP, "done"), check.fingerprint
        return Decision(job, Action.RUN, check.problem), None
    if row.status == JobStatus.FAILED.value:
        if row.failures <= retries:
            return Decision(job, Action.RUN, f"retry {row.failures} of {retries}"), None
        reason = f"failed {row.failures} time(s), retries exhausted: {row.error}"
        return Decision(job, Action.GIVE_UP, reason), None
    return Decision(job, Action.RUN, "interrupted" if row.interruptions else "pending"), None
