"""Worker processes on one machine: one per GPU (``--gpus N``) or per CPU share (``--workers N``).

Each worker is a ``spawn``-ed process that caps its threads, unpickles the processor, calls
``processor.setup(device)`` once (the model is loaded once per worker), then takes whole scenes
from the driver until told to stop. The driver hands a scene to whichever worker is idle, so the
workers effectively share one queue; each worker has its own pipe, so a worker that dies can
never wedge a shared queue's lock, and the driver always knows which scene it held.

A worker that dies (OOM killer, segfault, ``kill -9``) is replaced; its scene is rerun on another
worker, and reported failed after it has killed ``max_deaths`` workers (dask's
``allowed-failures`` rule). Workers die with the driver, so a killed run leaves no orphan
computing (and publishing) behind: on Linux the kernel sends each worker ``SIGKILL`` the moment
the driver dies (``PR_SET_PDEATHSIG``); elsewhere a thread watches the parent pid, and every
worker refuses to publish an output once its driver is gone (:data:`PARENT_ENV`, checked by
:func:`~diffris.geo.sinks.publish.publish` right before the rename).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from diffris.archive.backends import (
    BackendEvent,
    JobFinished,
    JobStarted,
    WorkerSetupError,
    execute,
    limit_threads,
    one_line,
)
from diffris.archive.jobs import SceneJob, SceneProcessor
from diffris.errors import InputError
from diffris.geo.sinks.publish import PARENT_ENV

__all__ = ["ProcessPoolBackend"]

logger = logging.getLogger(__name__)

_PARENT_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_STOP_TIMEOUT_S = 10.0


class ProcessPoolBackend:
    """Runs scenes in ``workers`` spawned processes on this machine.

    Args:
        workers: number of worker processes (>= 1).
        devices: device per worker, cycled (``["cuda:0", "cuda:1"]`` for ``--gpus 2``); None lets
            the processor choose.
        threads: compute threads per worker (1 when several workers share the CPU); None leaves
            the libraries' defaults.
        max_deaths: a scene is reported failed once that many workers died running it.

    Raises:
        InputError: ``workers`` < 1 or ``max_deaths`` < 1.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        devices: Sequence[str] | None = None,
        threads: int | None = 1,
        max_deaths: int = 3,
    ) -> None:
        if workers < 1:
            raise InputError(f"--workers {workers} must be at least 1")
        if max_deaths < 1:
            raise InputError(f"max_deaths {max_deaths} must be at least 1")
        self.workers = workers
        self.devices = list(devices) if devices else []
        self.threads = threads
        self.max_deaths = max_deaths

    @property
    def name(self) -> str:
        return f"pool({self.workers})"

    def run(self, jobs: Sequence[SceneJob], processor: SceneProcessor) -> Iterator[BackendEvent]:
        if not jobs:
            return
        try:
            payload = pickle.dumps(processor)
        except Exception as err:
            raise TypeError(f"the scene processor must be picklable: {one_line(err)}") from err
        pool = _Pool(self, payload, len(jobs))
        try:
            yield from pool.run(deque(jobs))
        finally:
            pool.stop()


@dataclass
class _Worker:
    slot: int
    name: str
    process: BaseProcess
    conn: Connection
    ready: bool = False
    job: SceneJob | None = None


class _Pool:
    def __init__(self, config: ProcessPoolBackend, payload: bytes, jobs: int) -> None:
        self.config = config
        self.payload = payload
        self.context = multiprocessing.get_context("spawn")
        self.size = min(config.workers, jobs)
        self.workers: dict[int, _Worker] = {}
        self.deaths: Counter[str] = Counter()
        self.setup_deaths = 0
        self.started = 0

    def run(self, pending: deque[SceneJob]) -> Iterator[BackendEvent]:
        for slot in range(self.size):
            self._start(slot)
        remaining = len(pending)
        while remaining:
            for worker in self.workers.values():
                if worker.ready and worker.job is None and pending:
                    worker.job = pending.popleft()
                    worker.conn.send(worker.job)
                    yield JobStarted(worker.job.key, worker.name)
            by_conn = {worker.conn: worker for worker in self.workers.values()}
            by_sentinel = {worker.process.sentinel: worker for worker in self.workers.values()}
            ready = wait([*by_conn, *by_sentinel])
            # Messages first: a worker may have sent its result just before exiting.
            for conn in [obj for obj in ready if obj in by_conn]:
                for event in self._receive(by_conn[conn]):
                    remaining -= isinstance(event, JobFinished)
                    yield event
            for sentinel in [obj for obj in ready if obj in by_sentinel]:
                worker = by_sentinel[sentinel]
                if self.workers.get(worker.slot) is not worker:
                    continue
                for event in self._bury(worker, pending):
                    remaining -= 1
                    yield event
                if pending:
                    self._start(worker.slot)

    def _receive(self, worker: _Worker) -> Iterator[BackendEvent]:
        while worker.conn.poll():
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                return  # the sentinel reports the death
            kind = message[0]
            if kind == "ready":
                worker.ready = True
                logger.debug("%s ready", worker.name)
            elif kind == "setup-failed":
                raise WorkerSetupError(f"{worker.name} cannot prepare the processor: {message[1]}")
            elif kind == "finished":
                worker.job = None
                yield message[1]

    def _bury(self, worker: _Worker, pending: deque[SceneJob]) -> Iterator[JobFinished]:
        self._receive_all_quietly(worker)
        worker.process.join(1)
        code = worker.process.exitcode
        del self.workers[worker.slot]
        worker.conn.close()
        if not worker.ready:
            self.setup_deaths += 1
            if self.setup_deaths >= self.config.max_deaths:
                raise WorkerSetupError(
                    f"{self.setup_deaths} worker processes died while loading the processor "
                    f"(last exit code {code}); check memory and the model"
                )
        job = worker.job
        if job is None:
            logger.warning("%s exited (code %s) while idle; replacing it", worker.name, code)
            return
        self.deaths[job.key] += 1
        if self.deaths[job.key] >= self.config.max_deaths:
            yield JobFinished(
                job.key,
                worker.name,
                error=f"worker processes died {self.deaths[job.key]} times running this scene "
                f"(last exit code {code}); it may need more memory",
            )
        else:
            logger.warning(
                "%s died (exit code %s) running %s; rerunning it on another worker",
                worker.name,
                code,
                job.input,
            )
            pending.appendleft(job)

    def _receive_all_quietly(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "finished":
                    worker.job = None
        except (EOFError, OSError):
            pass

    def _start(self, slot: int) -> None:
        devices = self.config.devices
        device = devices[slot % len(devices)] if devices else None
        self.started += 1
        name = f"worker-{slot}" + (f"({device})" if device else "")
        parent, child = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=_worker_main,
            args=(child, self.payload, device, self.config.threads, os.getpid(), name),
            name=f"diffris-{name}",
            daemon=True,
        )
        process.start()
        child.close()
        self.workers[slot] = _Worker(slot, name, process, parent)

    def stop(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for worker in self.workers.values():
            # A worker still on a scene (the run was interrupted) is terminated, not awaited.
            timeout = 0 if worker.job is not None else max(0.0, deadline - time.monotonic())
            worker.process.join(timeout)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(_STOP_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.kill()
            worker.conn.close()
        self.workers.clear()


def _worker_main(
    conn: Connection,
    payload: bytes,
    device: str | None,
    threads: int | None,
    parent: int,
    name: str,
) -> None:
    _die_with_parent(parent)
    limit_threads(threads)  # before unpickling imports torch
    try:
        # Our own bytes from the driver's memory, not a file: unpickling is safe here.
        processor: Any = pickle.loads(payload)
        processor.setup(device)
        limit_threads(threads)
    except Exception as err:
        conn.send(("setup-failed", one_line(err)))
        return
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(("finished", execute(processor, job, name)))


def _die_with_parent(parent: int) -> None:
    """Tie this worker's life to the driver's (see the module docstring)."""
    os.environ[PARENT_ENV] = str(parent)  # publish() refuses once the driver is gone
    if sys.platform.startswith("linux"):
        # The signal follows the driver *thread* that started the worker; the pool starts and
        # stops its workers from the thread consuming its events, so that thread outlives them.
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # the driver died before the signal was armed
        os._exit(1)
    # Portable fallback, and a second line of defence.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    # Reparenting means the driver is gone: stop at once rather than publish for nobody.
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)
