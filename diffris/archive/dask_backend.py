"""dask.distributed: scenes as tasks on a cluster (``--scheduler local`` or ``tcp://head:8786``).

One task per scene (``client.submit(..., pure=False)``), results consumed with ``as_completed``;
only the driver writes the ledger. Each worker process prepares the processor once: the task
carries the (small) processor, and a per-process cache keyed by a run token keeps the first copy,
on which ``setup`` (model loading) ran, for every later task of that run on that worker. Loading
happens in the task thread, not in a worker plugin, so a slow model load never blocks the
worker's event loop (and its heartbeats), and a worker restarted after a crash simply loads again
on its first task.

Each future is released as soon as its result has been handed to the runner (recorded in the
ledger): a result still held when the worker keeping it dies would make the scheduler compute
that scene again. When a worker dies, the scheduler reruns its running task on another worker, up to
``distributed.scheduler.allowed-failures`` times (``allowed_failures`` here for a local cluster);
past that the scene is reported failed (``KilledWorker``). Exceptions raised by the processor are
not retried within a run: the ledger's ``--retries`` decides on later runs.

With ``gpu=True`` every task asks for ``resources={"GPU": 1}``, so a worker runs one scene per
GPU it declares (start external workers with ``--resources GPU=1``, one per device); a local
cluster declares one GPU per worker and gives worker ``i`` the device ``cuda:i``.

A local cluster's worker processes are children of the driver and exit when it dies (distributed
watches a pipe from the parent); they also refuse to publish once it is gone
(:data:`~diffris.geo.sinks.publish.PARENT_ENV`). Workers of an external scheduler are not tied to
the driver, by design: they serve other clients too; a driver killed mid-run leaves them
finishing (and publishing) the scenes already submitted, which the next run skips as done.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
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

__all__ = ["DaskBackend"]

logger = logging.getLogger(__name__)

# Per worker process: run token -> the processor whose setup() ran. Bounded by one entry per run
# that used this worker; a long-lived cluster serving many runs keeps only the latest few.
_PREPARED: dict[str, Any] = {}
_PREPARED_LOCK = threading.Lock()
_KEEP_PREPARED = 2


class DaskBackend:
    """Runs scenes as tasks on a dask.distributed cluster.

    Args:
        address: ``"local"`` to start a :class:`~distributed.LocalCluster` on loopback, or a
            scheduler address such as ``tcp://head:8786``.
        n_workers: worker processes of a local cluster (one thread each).
        gpu: tasks need ``resources={"GPU": 1}`` (see the module docstring).
        threads: compute threads per worker process (None: library defaults).
        allowed_failures: worker deaths a task survives on a local cluster (None: dask's default,
            3); an external cluster keeps its scheduler's setting.
        timeout: seconds to wait for an external scheduler.

    Raises:
        InputError: ``n_workers`` < 1.
    """

    def __init__(
        self,
        address: str = "local",
        *,
        n_workers: int = 2,
        gpu: bool = False,
        threads: int | None = 1,
        allowed_failures: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        if n_workers < 1:
            raise InputError(f"--workers {n_workers} must be at least 1")
        self.address = address
        self.n_workers = n_workers
        self.gpu = gpu
        self.threads = threads
        self.allowed_failures = allowed_failures
        self.timeout = timeout

    @property
    def local(self) -> bool:
        return self.address == "local"

    @property
    def name(self) -> str:
        return f"dask(local, {self.n_workers})" if self.local else f"dask({self.address})"

    def run(self, jobs: Sequence[SceneJob], processor: SceneProcessor) -> Iterator[BackendEvent]:
        if not jobs:
            return
        from distributed import Client, as_completed

        cluster = self._start_cluster() if self.local else None
        try:
            client = Client(cluster if cluster is not None else self.address, timeout=self.timeout)
        except OSError as err:
            if cluster is not None:
                cluster.close()
            raise InputError(
                f"cannot reach the dask scheduler at {self.address}: {err}; check the address "
                "and that the scheduler runs"
            ) from err
        try:
            self._check_gpus(client)
            token = secrets.token_hex(8)
            device_plan = "local-gpu" if self.gpu and self.local else ("gpu" if self.gpu else None)
            futures = {}
            for job in jobs:
                future = client.submit(
                    _run_scene,
                    job,
                    processor,
                    token,
                    device_plan,
                    self.threads,
                    os.getpid() if self.local else None,
                    key=f"diffris-scene-{job.key[:16]}-{token}",
                    pure=False,
                    resources={"GPU": 1} if self.gpu else None,
                )
                futures[future] = job
                yield JobStarted(job.key, self.name)
            for future in as_completed(futures):
                job = futures.pop(future)
                try:
                    yield future.result()
                except WorkerSetupError:
                    raise  # the model cannot load: no scene can run
                except Exception as err:  # KilledWorker, a lost connection, ...
                    yield JobFinished(job.key, self.name, error=one_line(err))
                # Recorded: let the scheduler forget it. A held future whose result lived on a
                # worker that then dies is recomputed, re-publishing a scene already done.
                future.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def _start_cluster(self) -> Any:
        import dask
        from distributed import LocalCluster

        settings: dict[str, Any] = {}
        if self.allowed_failures is not None:
            settings["distributed.scheduler.allowed-failures"] = self.allowed_failures
        with dask.config.set(settings):
            return LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                resources={"GPU": 1} if self.gpu else None,
            )

    def _check_gpus(self, client: Any) -> None:
        if not self.gpu:
            return
        workers = client.scheduler_info().get("workers", {})
        if not any(info.get("resources", {}).get("GPU") for info in workers.values()):
            raise InputError(
                f"no worker of {self.address} declares a GPU resource; start workers with "
                "--resources GPU=1 (one per device) or drop the GPU option"
            )


def _run_scene(
    job: SceneJob,
    processor: Any,
    token: str,
    device_plan: str | None,
    threads: int | None,
    driver: int | None,
) -> JobFinished:
    """The task: prepare this worker's processor once per run, then process one scene."""
    from distributed import get_worker

    from diffris.geo.sinks.publish import PARENT_ENV

    if driver is not None and os.getppid() == driver:  # a local cluster's worker process
        os.environ[PARENT_ENV] = str(driver)
    worker = get_worker()
    prepared = _prepared(processor, token, _device(worker, device_plan), threads)
    return execute(prepared, job, str(worker.address))


def _prepared(processor: Any, token: str, device: str | None, threads: int | None) -> Any:
    with _PREPARED_LOCK:
        if token not in _PREPARED:
            limit_threads(threads)
            try:
                processor.setup(device)
            except Exception as err:
                raise WorkerSetupError(f"cannot prepare the processor: {one_line(err)}") from err
            limit_threads(threads)
            while len(_PREPARED) >= _KEEP_PREPARED:
                _PREPARED.pop(next(iter(_PREPARED)))
            _PREPARED[token] = processor
        return _PREPARED[token]


def _device(worker: Any, plan: str | None) -> str | None:
    if plan == "local-gpu" and isinstance(worker.name, int):
        return f"cuda:{worker.name}"  # LocalCluster names its workers 0, 1, ...
    if plan is not None:
        return "cuda"
    return None
