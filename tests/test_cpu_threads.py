"""The default thread count never exceeds the CPUs this process may use."""

import os
from pathlib import Path

import pytest

from diffris.cpu_threads import (
    affinity_cpus,
    cgroup_cpu_limit,
    default_threads,
    resolve_threads,
    usable_cpus,
)
from diffris.errors import InputError


def _cgroup(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup mount under ``tmp_path`` with ``files`` (relative paths), and a
    ``/proc/self/cgroup`` naming ``own`` as this process's cgroup (v2, or v1 'cpu' lines)."""
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc-cgroup"
    proc.write_text(own)
    return root, proc


def test_the_default_never_exceeds_the_affinity_or_the_quota_of_this_machine():
    allowed = len(os.sched_getaffinity(0))
    assert affinity_cpus() == allowed
    assert 1 <= usable_cpus() <= allowed
    assert 1 <= default_threads() <= usable_cpus()
    quota = cgroup_cpu_limit()
    if quota is not None:
        assert default_threads() <= max(1, int(quota))


@pytest.mark.parametrize(
    ("own", "files", "quota"),
    [
        ("0::/\n", {"cpu.max": "100000 100000\n"}, 1.0),  # cgroup v2: 1 CPU
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),  # no quota
        # v2, the own cgroup nested: its parent's 1.5 CPUs bind, not its own unlimited max
        ("0::/job/run\n", {"job/cpu.max": "150000 100000", "job/run/cpu.max": "max 100000"}, 1.5),
        # cgroup v1 (the cpu controller mounted with cpuacct)
        (
            "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            0.5,
        ),
        (
            "2:cpu:/\n",
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            None,
        ),
    ],
    ids=["v2-one-cpu", "v2-max", "v2-parent-binds", "v1-half-cpu", "v1-unlimited"],
)
def test_a_cgroup_quota_caps_the_default(tmp_path, own, files, quota):
    root, proc = _cgroup(tmp_path, own, files)
    assert cgroup_cpu_limit(root, proc) == quota
    usable = usable_cpus(root, proc)
    if quota is None:
        assert usable == affinity_cpus()
    else:  # rounded down, at least one
        assert usable == min(affinity_cpus(), max(1, int(quota)))
        assert default_threads(root=root, proc_cgroup=proc) == 1
    assert 1 <= default_threads(root=root, proc_cgroup=proc) <= usable


def test_workers_share_the_cpus_and_each_gets_at_least_one():
    assert default_threads(processes=1000) == 1
    assert default_threads(processes=2) <= max(1, usable_cpus() // 2)


def test_an_explicit_count_wins_and_a_bad_one_is_one_clear_error(monkeypatch):
    assert resolve_threads(3) == 3
    with pytest.raises(InputError, match="--threads 0 must be at least 1"):
        resolve_threads(0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert resolve_threads(None) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= resolve_threads(None) <= usable_cpus()
