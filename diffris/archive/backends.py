"""Where scenes run: the backend contract, its events, and the in-process backend.

A backend takes the jobs to run and the :class:`~diffris.archive.jobs.SceneProcessor` and yields
events as they happen: :class:`JobStarted` when a job is handed to a worker, :class:`JobFinished`
when it is over, successfully or not. It never touches the ledger: the runner (the driver)
consumes the events and is the only writer. A backend yields exactly one ``JobFinished`` per job,
even when a worker dies (the job is rerun elsewhere a few times, then reported failed), and stops
its workers when the generator is closed, so an interrupted run leaves no orphans behind.

Implementations: :class:`InlineBackend` (this process), :class:`~diffris.archive.pool.ProcessPoolBackend`
(worker processes on this machine, one per GPU or CPU share), and
:class:`~diffris.archive.dask_backend.DaskBackend` (a dask.distributed cluster).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from diffris.archive.jobs import SceneJob, SceneOutcome, SceneProcessor
from diffris.cpu_threads import limit_threads
from diffris.errors import DiffrisError

__all__ = [
    "Backend",
    "BackendEvent",
    "InlineBackend",
    "JobFinished",
    "JobStarted",
    "WorkerSetupError",
    "execute",
    "limit_threads",
]

logger = logging.getLogger(__name__)


class WorkerSetupError(DiffrisError, RuntimeError):
    """A worker could not prepare the processor (e.g. load the model); no scene can run."""


@dataclass(frozen=True)
class JobStarted:
    """A job was handed to ``worker``."""

    key: str
    worker: str


@dataclass(frozen=True)
class JobFinished:
    """A job is over: ``outcome`` on success, else ``error`` (one line) and its traceback."""

    key: str
    worker: str
    outcome: SceneOutcome | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


BackendEvent = JobStarted | JobFinished


class Backend(Protocol):
    """Runs jobs with a processor and reports events (see the module docstring)."""

    @property
    def name(self) -> str:
        """Short description for logs and the ledger's ``runs`` table, e.g. ``pool(2)``."""
        ...

    def run(self, jobs: Sequence[SceneJob], processor: SceneProcessor) -> Iterator[BackendEvent]:
        """Run every job once; yield one ``JobFinished`` per job (and ``JobStarted`` events)."""
        ...


def execute(processor: SceneProcessor, job: SceneJob, worker: str) -> JobFinished:
    """Run one job, turning any exception into a failed :class:`JobFinished`."""
    started = time.perf_counter()
    try:
        outcome = processor(job)
    except Exception as err:
        return JobFinished(job.key, worker, error=one_line(err), traceback=traceback.format_exc())
    if not isinstance(outcome, SceneOutcome):
        outcome = SceneOutcome(output=job.output, seconds=time.perf_counter() - started)
    return JobFinished(job.key, worker, outcome=outcome)


def one_line(err: BaseException) -> str:
    """``Type: message`` on one line (DiffrisError messages are already one line)."""
    text = " ".join(str(err).split()) or repr(err)
    return text if isinstance(err, DiffrisError) else f"{type(err).__name__}: {text}"


class InlineBackend:
    """Runs the jobs one after another in this process (``--workers 1``, tests, debugging).

    Args:
        device: passed to ``processor.setup``.
        threads: compute threads for this process (None: leave as is). Give worker processes
            the same number: float sums, hence probabilities, can differ in the last bit
            between thread counts, which flips mask pixels lying exactly at the threshold.
    """

    def __init__(self, device: str | None = None, *, threads: int | None = None) -> None:
        self.device = device
        self.threads = threads

    @property
    def name(self) -> str:
        return "inline"

    def run(self, jobs: Sequence[SceneJob], processor: SceneProcessor) -> Iterator[BackendEvent]:
        if not jobs:
            return
        limit_threads(self.threads)
        try:
            processor.setup(self.device)
        except Exception as err:
            raise WorkerSetupError(f"cannot prepare the scene processor: {one_line(err)}") from err
        limit_threads(self.threads)
        worker = f"inline:{os.getpid()}"
        for job in jobs:
            yield JobStarted(job.key, worker)
            yield execute(processor, job, worker)
