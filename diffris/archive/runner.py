"""The archive run: lock, plan against the ledger, hand scenes to a backend, record, report.

``archive()`` is what ``diffris archive SOURCE -o OUT`` calls; ``run_archive()`` is the same from
a list of jobs. The runner is the *driver*: the only process writing the ledger. It

1. takes the output folder's lock (a second run fails at once, :data:`~diffris.archive.lock.EXIT_LOCKED`);
2. removes temporary outputs and parts left by killed runs, and returns their ``running`` rows
   to ``pending``;
3. plans every job: skip it if done and its output is still the one published (same size and
   mtime, or the same checksum; see :mod:`~diffris.archive.outputs`), give up on it if it
   failed more than ``retries`` times, run it otherwise; a folder where an output file belongs
   fails that scene (it is never deleted);
4. runs the rest on the backend, recording each scene as it starts and ends; one scene's
   failure never stops the others;
5. returns an :class:`ArchiveReport` whose ``exit_code`` is 0 only when every scene is done.

Log lines are plain (one per scene, with counts), so a cron log reads well; a terminal UI can
follow along through ``progress``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffris.archive.backends import Backend, InlineBackend, JobFinished, JobStarted
from diffris.archive.fingerprint import OutputFingerprint
from diffris.archive.inputs import discover_scenes
from diffris.archive.jobs import SceneJob, SceneProcessor, make_jobs
from diffris.archive.ledger import Action, Ledger
from diffris.archive.lock import OutputLock
from diffris.archive.outputs import check_done_output, fingerprint_job, is_store, verify_output
from diffris.archive.split import (
    SplitGroup,
    clean_parts,
    merge_parts,
    remove_parts,
    split_jobs,
)
from diffris.data.prompts import Prompt
from diffris.errors import InputError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "ArchiveProgress",
    "ArchiveReport",
    "SceneResult",
    "archive",
    "run_archive",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
#: Some scene is not done (failed now, or gave up after its retries).
EXIT_FAILED = 1


@dataclass(frozen=True)
class SceneResult:
    """What happened to one scene in this run.

    Attributes:
        input: the scene.
        output: its output path.
        status: ``done`` (processed now), ``skipped`` (already done), ``failed`` (failed now) or
            ``given-up`` (failed more than ``retries`` times before; not attempted).
        reason: why it ran or not (``new``, ``input changed``, ``output missing``, ...).
        error: the error, for failed and given-up scenes.
        seconds: processing time, for scenes processed now.
    """

    key: str
    input: str
    output: str
    status: str
    reason: str
    error: str | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class ArchiveProgress:
    """Counts while a run goes on (for a progress display)."""

    total: int
    to_run: int
    done: int
    failed: int
    running: int


@dataclass
class ArchiveReport:
    """The outcome of a run; ``exit_code`` is 0 only when every scene is done."""

    out_dir: str
    backend: str
    results: list[SceneResult] = field(default_factory=list)
    seconds: float = 0.0
    run_id: int | None = None

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def counts(self) -> dict[str, int]:
        return {s: self.count(s) for s in ("done", "skipped", "failed", "given-up")}

    @property
    def exit_code(self) -> int:
        ok = all(result.status in ("done", "skipped") for result in self.results)
        return EXIT_OK if ok else EXIT_FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "backend": self.backend,
            "run_id": self.run_id,
            "seconds": round(self.seconds, 3),
            "counts": self.counts,
            "exit_code": self.exit_code,
            "scenes": [asdict(result) for result in self.results],
        }


def archive(
    source: str | Path,
    *,
    out_dir: str | Path,
    processor: SceneProcessor,
    model: str,
    model_id: str,
    prompts: Sequence[Prompt],
    options: Mapping[str, Any],
    suffix: str = ".tif",
    backend: Backend | None = None,
    retries: int = 2,
    hash_content: bool = False,
    split_rows: int | None = None,
    split_align: int = 512,
    progress: Callable[[ArchiveProgress], None] | None = None,
    verify: bool = False,
    stac: bool = False,
    asset: str | None = None,
) -> ArchiveReport:
    """Discover the scenes of ``source`` and run them into ``out_dir`` (``diffris archive``).

    The lock is taken first, so a second run exits at once, before any discovery or hashing.

    Args:
        source: a folder, a glob, a scene list or one raster (see
            :func:`~diffris.archive.inputs.discover_scenes`).
        out_dir: the output folder; holds the ledger and the lock.
        processor: the per-scene work.
        model: model spec the workers load (preset name or trained-model folder).
        model_id: the model's identity, recorded and hashed into every job.
        prompts: the prompt set.
        options: JSON-able options that shape outputs (changing one reprocesses).
        suffix: output extension (``.tif`` or ``.zarr``).
        backend: where scenes run; None runs them in this process.
        retries: later runs retry a failed scene while it failed at most this many times.
        hash_content: identify inputs by content hash instead of mtime.
        split_rows: split GeoTIFF scenes taller than this many rows across workers.
        split_align: part boundaries are multiples of this many rows (the output block size).
        progress: called after every scene event.
        verify: checksum every done output, even those whose size and mtime are unchanged.
        stac: write a STAC item beside each output and keep ``out_dir/catalog.json``
            (:mod:`diffris.stac.archive`).
        asset: the asset read from each item of a STAC source.

    Raises:
        ArchiveLockedError: another run holds the folder.
        InputError, InputNotFoundError: the source names no scene.
        WorkerSetupError: the processor cannot be prepared (e.g. the model does not load).
    """
    out = Path(out_dir)
    if stac and suffix == ".zarr":
        raise InputError("--stac describes GeoTIFF/COG outputs; use --format gtiff or cog")
    with OutputLock(out) as lock:
        scenes = discover_scenes(source, exclude=[out], asset=asset)
        known = {}
        if hash_content:
            with Ledger.for_output(out) as ledger:
                known = ledger.known_identities()
        jobs = make_jobs(
            scenes,
            out_dir=out,
            model=model,
            model_id=model_id,
            prompts=prompts,
            options=options,
            suffix=suffix,
            hash_content=hash_content,
            known=known,
        )
        logger.info("%s: %d scene(s) from %s", out, len(jobs), source)
        return run_archive(
            jobs,
            out_dir=out,
            processor=processor,
            backend=backend,
            retries=retries,
            split_rows=split_rows,
            split_align=split_align,
            lock=lock,
            progress=progress,
            verify=verify,
            stac=stac,
        )


def run_archive(
    jobs: Sequence[SceneJob],
    *,
    out_dir: str | Path,
    processor: SceneProcessor,
    backend: Backend | None = None,
    retries: int = 2,
    split_rows: int | None = None,
    split_align: int = 512,
    lock: OutputLock | None = None,
    progress: Callable[[ArchiveProgress], None] | None = None,
    verify: bool = False,
    stac: bool = False,
) -> ArchiveReport:
    """Run ``jobs`` into ``out_dir`` (see the module docstring).

    Args:
        jobs: from :func:`~diffris.archive.jobs.make_jobs`.
        out_dir: the output folder (ledger, lock, outputs).
        processor: the per-scene work.
        backend: where scenes run; None runs them in this process.
        retries: a failed scene is retried on later runs while it failed at most this many times.
        split_rows: split GeoTIFF scenes taller than this into parts on different workers.
        split_align: part boundaries are multiples of this many rows (the output block size).
        lock: the folder's lock if the caller holds it already; else it is taken here.
        progress: called after every scene event.
        verify: checksum every done output, even those whose size and mtime are unchanged.
        stac: write each output's STAC item and keep the folder's catalog, after each scene.

    Raises:
        ArchiveLockedError: another run holds the folder.
        WorkerSetupError: the processor cannot be prepared.
    """
    if retries < 0:
        raise InputError(f"--retries {retries} must be 0 or more")
    if split_rows is not None and split_rows < split_align:
        raise InputError(f"--split-rows {split_rows} is below one block ({split_align} rows)")
    started = time.perf_counter()
    out = Path(out_dir)
    backend = backend or InlineBackend()
    own_lock = lock is None
    lock = lock if lock is not None else OutputLock(out).acquire()
    try:
        with Ledger.for_output(out) as ledger:
            return _Run(ledger, out, backend, retries, progress, verify, stac).execute(
                jobs, processor, split_rows, split_align, started
            )
    finally:
        if own_lock:
            lock.release()


class _Run:
    def __init__(
        self,
        ledger: Ledger,
        out: Path,
        backend: Backend,
        retries: int,
        progress: Callable[[ArchiveProgress], None] | None,
        verify: bool = False,
        stac: bool = False,
    ) -> None:
        from diffris.stac.archive import ArchiveStac

        self.stac = ArchiveStac(out) if stac else None
        self.ledger = ledger
        self.verify = verify
        self.out = out
        self.backend = backend
        self.retries = retries
        self.progress = progress
        self.report = ArchiveReport(str(out), backend.name)
        self.running: set[str] = set()
        self.reasons: dict[str, str] = {}
        self.total = self.to_run = 0

    def execute(
        self,
        jobs: Sequence[SceneJob],
        processor: SceneProcessor,
        split_rows: int | None,
        split_align: int,
        started: float,
    ) -> ArchiveReport:
        _clean_leftovers(self.out, jobs)
        self.ledger.recover_interrupted()
        run_id = self.ledger.begin_run(
            backend=self.backend.name, retries=self.retries, jobs=len(jobs)
        )
        self.report.run_id = run_id
        decisions = self.ledger.plan(
            jobs,
            retries=self.retries,
            check_output=functools.partial(check_done_output, verify=self.verify),
            run_id=run_id,
        )
        to_run = []
        for decision in decisions:
            job = decision.job
            if decision.action is Action.RUN and (blocker := _folder_in_the_way(job)):
                self.ledger.mark_failed(job.key, error=blocker)
                self._result(job, "failed", decision.reason, error=blocker)
                logger.warning("%s: failed: %s", job.input, blocker)
            elif decision.action is Action.RUN:
                to_run.append(job)
                self.reasons[job.key] = decision.reason
                logger.debug("%s: will run (%s)", job.input, decision.reason)
            elif decision.action is Action.SKIP:
                self._result(job, "skipped", decision.reason)
                self._keep_item(job)
            else:
                row = self.ledger.row(job.key)
                self._result(job, "given-up", "retries exhausted", error=row.error if row else None)
                logger.warning("%s: not retried: %s", job.input, decision.reason)
        self.total, self.to_run = len(jobs), len(to_run)
        logger.info(
            "%d scene(s): %d to run, %d already done, %d given up, on %s",
            len(jobs),
            len(to_run),
            self.report.count("skipped"),
            self.report.count("given-up"),
            self.backend.name,
        )
        by_key = {job.key: job for job in to_run}
        tasks, groups = to_run, {}
        if split_rows is not None and to_run:
            tasks, groups = split_jobs(
                to_run, out_dir=self.out, max_rows=split_rows, align=split_align
            )
        events = self.backend.run(tasks, processor) if tasks else iter(())
        try:
            for event in events:
                group = groups.get(event.key)
                job = group.job if group is not None else by_key[event.key]
                if isinstance(event, JobStarted):
                    if job.key not in self.running:
                        self.running.add(job.key)
                        self.ledger.mark_running(job.key, worker=event.worker)
                elif group is not None:
                    self._part_finished(group, event)
                else:
                    self._finished(job, event)
                self._notify()
        except BaseException:
            # Interrupted (Ctrl-C, a setup error): what was running goes back to pending.
            self.ledger.mark_pending(sorted(self.running))
            raise
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # stops the backend's workers
        self.report.seconds = time.perf_counter() - started
        counts = self.report.counts
        self.ledger.end_run(
            run_id,
            done=counts["done"],
            skipped=counts["skipped"],
            failed=counts["failed"] + counts["given-up"],
            exit_code=self.report.exit_code,
        )
        logger.info(
            "finished in %.1f s: %d done, %d skipped, %d failed, %d given up",
            self.report.seconds,
            counts["done"],
            counts["skipped"],
            counts["failed"],
            counts["given-up"],
        )
        return self.report

    def _finished(self, job: SceneJob, event: JobFinished) -> None:
        self.running.discard(job.key)
        error = event.error
        published: OutputFingerprint | None = None
        if error is None and (problem := verify_output(job)) is not None:
            error = f"the processor reported success but {problem}"
        if error is None:
            try:
                published = fingerprint_job(job)
            except (OSError, ValueError) as err:
                error = f"the output cannot be read back: {err}"
        if error is None and self.stac is not None:
            try:  # before the row says done: a done scene always has its item
                self.stac.published(job)
            except Exception as err:
                error = f"writing its STAC item failed: {type(err).__name__}: {err}"
        if error is not None:
            self.ledger.mark_failed(job.key, error=error, worker=event.worker)
            self._result(job, "failed", self.reasons[job.key], error=error)
            logger.warning("%s %s: failed: %s", self._counter(), job.input, error)
            if event.traceback:
                logger.debug("%s traceback:\n%s", job.input, event.traceback)
            return
        outcome = event.outcome
        seconds = outcome.seconds if outcome is not None else 0.0
        tiles = outcome.tiles if outcome is not None else None
        self.ledger.mark_done(
            job.key, seconds=seconds, tiles=tiles, worker=event.worker, output=published
        )
        self._result(job, "done", self.reasons[job.key], seconds=seconds)
        logger.info("%s %s: done in %.1f s -> %s", self._counter(), job.input, seconds, job.output)

    def _keep_item(self, job: SceneJob) -> None:
        if self.stac is None:
            return
        try:
            self.stac.kept(job)
        except Exception as err:  # the scene stays done; its item is retried next run
            logger.warning("%s: cannot write its STAC item: %s", job.output, err)

    def _part_finished(self, group: SplitGroup, event: JobFinished) -> None:
        group.finished[event.key] = event.error
        if event.outcome is not None:
            group.seconds += event.outcome.seconds
        if event.error is not None and event.traceback:
            logger.debug("%s traceback:\n%s", event.key, event.traceback)
        if not group.complete:
            return
        error = group.error
        if error is None:
            try:
                merge_parts(group)
            except Exception as err:
                error = f"merging the parts failed: {type(err).__name__}: {err}"
        else:
            remove_parts(group)
        self._finished(
            group.job,
            JobFinished(
                group.job.key,
                event.worker,
                outcome=None if error else _outcome(group),
                error=error,
            ),
        )

    def _result(self, job: SceneJob, status: str, reason: str, **extra: Any) -> None:
        self.report.results.append(
            SceneResult(job.key, job.input, job.output, status, reason, **extra)
        )

    def _counter(self) -> str:
        finished = self.report.count("done") + self.report.count("failed")
        return f"[{finished}/{self.to_run}]"

    def _notify(self) -> None:
        if self.progress is not None:
            self.progress(
                ArchiveProgress(
                    total=self.total,
                    to_run=self.to_run,
                    done=self.report.count("done"),
                    failed=self.report.count("failed"),
                    running=len(self.running),
                )
            )


def _outcome(group: SplitGroup) -> Any:
    from diffris.archive.jobs import SceneOutcome

    return SceneOutcome(output=group.job.output, seconds=group.seconds)


def _folder_in_the_way(job: SceneJob) -> str | None:
    """Why a scene must not run: a folder (not ours) sits where its output file goes."""
    path = Path(job.output)
    if is_store(job) or path.is_symlink() or not path.is_dir():
        return None
    return (
        f"{path} is a folder where the scene's output file goes; move it away (it was not "
        "touched) and rerun"
    )


def _clean_leftovers(out: Path, jobs: Sequence[SceneJob]) -> None:
    """Temporary outputs and split parts of killed runs (safe: this run holds the lock)."""
    from diffris.geo.sinks.publish import clean_stale_partials

    for folder in sorted({Path(job.output).parent for job in jobs} | {out}):
        clean_stale_partials(folder)
    clean_parts(out)
