"""The archive ledger: one SQLite row per (scene, prompt set, model, options) in the output folder.

Only the driver process writes it (workers report back to the driver), so there is one writer
per run, and the output-folder lock makes it one run at a time; ``diffris archive status`` may
read while a run writes (WAL mode). Each status change is its own short transaction, so a
``kill -9`` loses at most the change in flight.

Row life cycle: ``pending`` (planned) -> ``running`` (handed to a worker) -> ``done`` or
``failed``. A row still ``running`` when a run starts was left by a killed run: it goes back to
``pending`` (an *interruption*, not counted against ``--retries``, since a reboot is not the
scene's fault). A ``failed`` row is retried on later runs while its consecutive ``failures`` are
at most ``retries``; past that it is *given up* (reported, exit code non-zero) until its input
changes. See :data:`SCHEMA` for the columns.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from diffris.archive.inputs import InputIdentity
from diffris.archive.jobs import SceneJob
from diffris.errors import InputError, InputNotFoundError
from diffris.safe_paths import Kind, refuse_unsafe

__all__ = [
    "LEDGER_NAME",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Action",
    "Decision",
    "JobStatus",
    "Ledger",
    "LedgerRow",
    "LedgerSummary",
]

logger = logging.getLogger(__name__)

LEDGER_NAME = "diffris-ledger.sqlite"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,      -- unix seconds
    finished_at REAL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    backend TEXT NOT NULL,
    retries INTEGER NOT NULL,
    jobs INTEGER NOT NULL,
    done INTEGER, skipped INTEGER, failed INTEGER, exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,          -- sha256(input, prompt_hash, model_id, options_hash)[:32]
    input TEXT NOT NULL,           -- local path or GDAL URL
    output TEXT NOT NULL,
    model_id TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    options_hash TEXT NOT NULL,
    input_size INTEGER,            -- bytes; NULL for URLs
    input_mtime_ns INTEGER,
    input_sha256 TEXT,             -- only with --hash-content
    digest TEXT NOT NULL,          -- sha256(key, input identity): the output's diffris_job tag
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,       -- finished attempts, ever
    failures INTEGER NOT NULL DEFAULT 0,       -- consecutive failures since success/input change
    interruptions INTEGER NOT NULL DEFAULT 0,  -- runs killed while this scene was running
    error TEXT,
    worker TEXT,
    tiles INTEGER,
    seconds REAL,                  -- processing wall time of the last success
    planned_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    run_id INTEGER REFERENCES runs (id)
);
CREATE INDEX IF NOT EXISTS jobs_output ON jobs (output, planned_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""
#: SQLite's own files next to the database, written as freely as the database itself.
_SIDE_FILES = ("-journal", "-wal", "-shm")
_MIGRATIONS: dict[int, str] = {}  # version -> SQL taking the schema from version - 1 to version


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

    @property
    def identity(self) -> InputIdentity:
        return InputIdentity(self.input_size, self.input_mtime_ns, self.input_sha256)

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


class Ledger:
    """The SQLite ledger of an output folder (one connection; use from one thread).

    Args:
        path: the database file (see :meth:`for_output`).
        readonly: open for reading only (``status``); the file must exist.

    Raises:
        InputNotFoundError: ``readonly`` and there is no ledger.
        InputError: the ledger was written by a newer diffris.
        OutputNotWritableError: the ledger or one of SQLite's side files is a symbolic link,
            not a regular file, or hard-linked (SQLite would write through it).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        for name in (self.path, *(self.path.with_name(self.path.name + s) for s in _SIDE_FILES)):
            refuse_unsafe(name, Kind.FILE, "archive ledger", single_link=True)
        if readonly:
            if not self.path.is_file():
                raise InputNotFoundError(
                    f"no archive ledger at {self.path}; run 'diffris archive' into that folder first"
                )
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        else:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; fast commits
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.row_factory = sqlite3.Row
        self._migrate(readonly)

    @classmethod
    def for_output(cls, out_dir: str | Path, *, readonly: bool = False) -> Ledger:
        """The ledger of an output folder: ``<out_dir>/diffris-ledger.sqlite``."""
        if not readonly:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        return cls(Path(out_dir) / LEDGER_NAME, readonly=readonly)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- runs ------------------------------------------------------------------------------------

    def begin_run(self, *, backend: str, retries: int, jobs: int) -> int:
        """Record a run's start; returns its id."""
        cursor = self._db.execute(
            "INSERT INTO runs (started_at, pid, host, backend, retries, jobs) VALUES (?,?,?,?,?,?)",
            (time.time(), os.getpid(), socket.gethostname(), backend, retries, jobs),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def end_run(self, run_id: int, *, done: int, skipped: int, failed: int, exit_code: int) -> None:
        """Record a run's end and its counts."""
        self._db.execute(
            "UPDATE runs SET finished_at=?, done=?, skipped=?, failed=?, exit_code=? WHERE id=?",
            (time.time(), done, skipped, failed, exit_code, run_id),
        )

    def recover_interrupted(self) -> int:
        """Return rows left ``running`` by a killed run to ``pending``; call under the lock.

        Returns:
            How many rows were recovered.
        """
        cursor = self._db.execute(
            "UPDATE jobs SET status='pending', interruptions=interruptions+1, "
            "error='interrupted: the run was killed while this scene was running' "
            "WHERE status='running'"
        )
        if cursor.rowcount:
            logger.warning(
                "%d scene(s) were interrupted by a killed run; rerunning", cursor.rowcount
            )
        return cursor.rowcount

    # --- planning --------------------------------------------------------------------------------

    def known_identities(self) -> dict[str, InputIdentity]:
        """Last recorded identity per input path (to reuse content hashes)."""
        rows = self._db.execute(
            "SELECT input, input_size, input_mtime_ns, input_sha256 FROM jobs "
            "WHERE input_sha256 IS NOT NULL"
        )
        return {row[0]: InputIdentity(row[1], row[2], row[3]) for row in rows}

    def plan(
        self,
        jobs: Sequence[SceneJob],
        *,
        retries: int,
        verify_output: Callable[[SceneJob], str | None],
        run_id: int | None = None,
    ) -> list[Decision]:
        """Decide per job: run, skip (done and verified) or give up; record every job.

        Args:
            jobs: the run's jobs.
            retries: a failed row is retried while its consecutive failures are <= ``retries``.
            verify_output: returns None when ``job.output`` exists and carries ``job.digest``,
                else the reason it does not (e.g. ``"output missing"``).
            run_id: the current run, recorded on every planned row.

        Returns:
            One decision per job, in order.
        """
        existing = self._rows_by_key([job.key for job in jobs])
        decisions = []
        now = time.time()
        with self._transaction():
            for job in jobs:
                row = existing.get(job.key)
                decision = _decide(job, row, retries, verify_output)
                fresh = row is None or row.digest != job.digest
                self._upsert(job, decision, fresh=fresh, now=now, run_id=run_id)
                decisions.append(decision)
        return decisions

    # --- status changes (one short transaction each) ---------------------------------------------

    def mark_running(self, key: str, *, worker: str | None = None) -> None:
        self._db.execute(
            "UPDATE jobs SET status='running', started_at=?, worker=? WHERE key=?",
            (time.time(), worker, key),
        )

    def mark_done(
        self, key: str, *, seconds: float, tiles: int | None = None, worker: str | None = None
    ) -> None:
        self._db.execute(
            "UPDATE jobs SET status='done', attempts=attempts+1, failures=0, error=NULL, "
            "seconds=?, tiles=?, worker=COALESCE(?, worker), finished_at=? WHERE key=?",
            (seconds, tiles, worker, time.time(), key),
        )

    def mark_failed(self, key: str, *, error: str, worker: str | None = None) -> None:
        self._db.execute(
            "UPDATE jobs SET status='failed', attempts=attempts+1, failures=failures+1, "
            "error=?, worker=COALESCE(?, worker), finished_at=? WHERE key=?",
            (error, worker, time.time(), key),
        )

    def mark_pending(self, keys: Sequence[str]) -> None:
        """Put rows back to ``pending`` (a run stopped before finishing them)."""
        with self._transaction():
            self._db.executemany(
                "UPDATE jobs SET status='pending' WHERE key=? AND status='running'",
                [(key,) for key in keys],
            )

    # --- reading ---------------------------------------------------------------------------------

    def row(self, key: str) -> LedgerRow | None:
        return self._rows_by_key([key]).get(key)

    def rows(self, *, all_rows: bool = False) -> list[LedgerRow]:
        """Rows by output; by default only the most recently planned row of each output."""
        if all_rows:
            query = "SELECT * FROM jobs ORDER BY output, planned_at"
        else:
            query = (
                "SELECT * FROM jobs AS j WHERE NOT EXISTS (SELECT 1 FROM jobs AS k "
                "WHERE k.output = j.output AND k.planned_at > j.planned_at) ORDER BY output"
            )
        return [LedgerRow(**dict(row)) for row in self._db.execute(query)]

    def summary(self, *, all_rows: bool = False) -> LedgerSummary:
        """Counts per status and the rows, for ``diffris archive status``."""
        run = self._db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        last_run = dict(run) if run is not None else None
        rows = self.rows(all_rows=all_rows)
        counts = {status.value: 0 for status in JobStatus}
        for row in rows:
            counts[row.status] += 1
        retries = last_run["retries"] if last_run else None
        counts["given_up"] = sum(
            row.status == "failed" and retries is not None and row.failures > retries
            for row in rows
        )
        return LedgerSummary(str(self.path), counts, rows, last_run)

    # --- internals -------------------------------------------------------------------------------

    def _migrate(self, readonly: bool) -> None:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        version = 0
        if has_meta:
            found = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(found[0]) if found else 0
        if version > SCHEMA_VERSION:
            raise InputError(
                f"ledger {self.path} has schema v{version}, newer than this diffris (v"
                f"{SCHEMA_VERSION}); upgrade diffris"
            )
        if version == SCHEMA_VERSION or readonly:
            return
        with self._transaction():
            if version == 0:
                _run_script(self._db, SCHEMA)
            else:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    _run_script(self._db, _MIGRATIONS[step])
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def _rows_by_key(self, keys: Sequence[str]) -> dict[str, LedgerRow]:
        rows: dict[str, LedgerRow] = {}
        for start in range(0, len(keys), 500):  # SQLite limits the number of parameters
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT * FROM jobs WHERE key IN ({marks})", chunk):
                rows[row["key"]] = LedgerRow(**dict(row))
        return rows

    def _upsert(
        self, job: SceneJob, decision: Decision, *, fresh: bool, now: float, run_id: int | None
    ) -> None:
        identity = job.identity
        values = {
            "key": job.key,
            "input": job.input,
            "output": job.output,
            "model_id": job.model_id,
            "prompt_hash": job.prompt_hash,
            "options_hash": job.options_hash,
            "input_size": identity.size,
            "input_mtime_ns": identity.mtime_ns,
            "input_sha256": identity.sha256,
            "digest": job.digest,
            "planned_at": now,
            "run_id": run_id,
        }
        if fresh:
            # New row, or the input changed: the scene's history starts over.
            values |= {"status": "pending", "attempts": 0, "failures": 0, "error": None}
        elif decision.action is Action.RUN:
            values["status"] = "pending"
        if fresh:
            columns = ", ".join(values)
            marks = ", ".join("?" * len(values))
            updates = ", ".join(f"{name}=excluded.{name}" for name in values if name != "key")
            self._db.execute(
                f"INSERT INTO jobs ({columns}) VALUES ({marks}) "
                f"ON CONFLICT(key) DO UPDATE SET {updates}",
                tuple(values.values()),
            )
        else:
            key = values.pop("key")
            updates = ", ".join(f"{name}=?" for name in values)
            self._db.execute(f"UPDATE jobs SET {updates} WHERE key=?", (*values.values(), key))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the surrounding transaction; run statement by statement.
    script = re.sub(r"--[^\n]*", "", script)
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _decide(
    job: SceneJob,
    row: LedgerRow | None,
    retries: int,
    verify_output: Callable[[SceneJob], str | None],
) -> Decision:
    if row is None:
        return Decision(job, Action.RUN, "new")
    if row.digest != job.digest:
        return Decision(job, Action.RUN, "input changed")
    if row.status == JobStatus.DONE.value:
        problem = verify_output(job)
        if problem is None:
            return Decision(job, Action.SKIP, "done")
        return Decision(job, Action.RUN, problem)
    if row.status == JobStatus.FAILED.value:
        if row.failures <= retries:
            return Decision(job, Action.RUN, f"retry {row.failures} of {retries}")
        return Decision(
            job, Action.GIVE_UP, f"failed {row.failures} time(s), retries exhausted: {row.error}"
        )
    return Decision(job, Action.RUN, "interrupted" if row.interruptions else "pending")
