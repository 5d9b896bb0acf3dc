"""How many compute threads a run uses on this CPU, and setting them.

A CPU run's default must not oversubscribe: on a shared 2-core machine, 2 threads were 4.5-20x
slower per tile than 1, because PyTorch's OpenMP threads spin-wait for each other at every
operator and one descheduled thread stalls them all. :func:`default_threads` therefore counts
only the CPUs this process may use (its affinity mask, capped by a cgroup CPU quota: a container
limited to 2 CPUs on a 64-core host sees 64 in ``os.cpu_count()``) and, of those, only the ones
that other work leaves idle (the machine's 1-minute load average).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from diffris.errors import InputError

#: Where cgroup file systems are mounted, and where a process reads its own cgroups.
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
#: cgroup v1 directory names that hold the ``cpu`` controller.
V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def affinity_cpus() -> int:
    """CPUs this process may be scheduled on (its affinity mask; all CPUs where unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup, in CPUs (1.5 = 150 ms a 100 ms period).

    Reads cgroup v2 ``cpu.max`` and v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in this
    process's own cgroup and each of its parents up to ``root`` (inside a container the own
    path often is not mounted: then ``root``'s files are what apply), and returns the smallest.

    Returns:
        None where no quota is set or none can be read (not Linux, no cgroup mounted).
    """
    limits = [
        limit
        for folder in _cgroup_folders(root, proc_cgroup)
        if (limit := _quota_in(folder)) is not None
    ]
    return min(limits) if limits else None


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs this process may use: its affinity count, capped by its cgroup quota (rounded down,
    at least 1: 2 threads on a 1.5-CPU quota are throttled each period)."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return cpus


def default_threads(
    *, processes: int = 1, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
) -> int:
    """Compute threads per process when ``--threads`` is not given: never more than usable.

    The CPUs this process may use (:func:`usable_cpus`), but no more than the machine has idle
    (its CPU count minus the 1-minute load average, rounded), shared among ``processes``
    workers, at least 1. The load average is machine-wide (a container sees its host's): on a
    busy host this errs towards fewer threads, which costs a little speed where more would
    have overloaded the CPUs, which costs several times more. It is read once, when a run
    starts. A float sum's last bit can depend on the thread count, so pass ``--threads`` to make
    outputs bit-identical across machines and runs.

    Args:
        processes: worker processes that will share the CPUs (archive ``--workers``).
        root, proc_cgroup: where the cgroup files are (tests point them elsewhere).
    """
    usable = usable_cpus(root, proc_cgroup)
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        load = 0.0
    idle = math.floor((os.cpu_count() or usable) - load + 0.5)
    return max(1, min(usable, idle) // max(1, processes))


def resolve_threads(threads: int | None) -> int:
    """The compute threads of a run: ``--threads`` as given, else ``$OMP_NUM_THREADS`` when set,
    else torch's own default (one per physical core) lowered to :func:`default_threads`.

    Raises:
        InputError: ``threads`` is below 1.
    """
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads {threads} must be at least 1; e.g. --threads 1")
        return threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        return int(env)
    import torch

    return min(torch.get_num_threads(), default_threads())


def limit_threads(threads: int | None) -> None:
    """Cap this process's compute threads (torch, OpenMP, BLAS) so workers don't oversubscribe.

    Environment variables only help before torch/numpy start their pools (and pass the cap to
    child processes), so workers call this first thing; torch's own setting is applied too when
    torch is already imported. None leaves everything as it is.
    """
    if threads is None:
        return
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _cgroup_folders(root: Path, proc_cgroup: Path) -> list[Path]:
    """This process's cgroup folders (v2 and v1 ``cpu``) and their parents, up to the mounts."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    folders: list[Path] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            mounts = [root]
        elif "cpu" in controllers.split(","):
            mounts = [root / name for name in V1_CPU_DIRS]
        else:
            continue
        parts = Path(path.strip() or "/").parts[1:]
        for mount in mounts:
            folders += [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return folders


def _quota_in(folder: Path) -> float | None:
    """The quota a cgroup folder sets, in CPUs (None: none set, or no such files)."""
    try:
        if (folder / "cpu.max").is_file():
            quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
            if quota == "max":
                return None
            return int(quota) / int(period or 100000)
        if (folder / "cpu.cfs_quota_us").is_file():
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
            return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None
    return None
