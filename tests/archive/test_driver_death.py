"""``kill -9`` of the driver alone: its workers (a pool's, a local dask cluster's) die with it and
publish nothing after."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from diffris.geo.sinks.publish import PARENT_ENV, DriverGoneError, partial_path, publish
from tests.archive.archive_helpers import write_scene

ROOT = Path(__file__).resolve().parents[2]
RUNNER = """
import sys
from pathlib import Path
from diffris.archive.dask_backend import DaskBackend
from diffris.archive.pool import ProcessPoolBackend
from diffris.archive.runner import archive
from tests.archive.archive_helpers import PROMPTS, field_processor, job_options
if __name__ == "__main__":
    backend = ProcessPoolBackend(2) if sys.argv[3] == "pool" else DaskBackend(n_workers=2)
    report = archive(Path(sys.argv[1]), out_dir=Path(sys.argv[2]), model="stand-in",
                     processor=field_processor(busy=0.4), model_id="field-v1",
                     prompts=PROMPTS, options=job_options(), backend=backend)
    sys.exit(report.exit_code)
"""
#: How long workers may outlive the driver: the kernel's parent-death signal is immediate; dask's
#: parent pipe needs the GIL, which a task's C call (0.4 s here) holds.
OUTLIVE_S = {"pool": 0.3, "dask": 1.0}


def _published(out: Path) -> set[str]:
    return {path.name for path in out.glob("*.tif")}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("backend", ["pool", "dask"])
def test_workers_die_with_a_killed_driver_and_publish_nothing_after(tmp_path, backend):
    for index in range(8):
        write_scene(tmp_path / "in" / f"s{index}.tif", seed=index)
    out = tmp_path / "out"
    script = tmp_path / "run.py"  # a file, not -c: dask's spawned workers re-import __main__
    script.write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "in"), str(out), backend],
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        # Both workers mid-scene, holding the GIL in long C calls.
        while len(list(out.glob(".*.partial-*"))) < 2 or not _published(out):
            assert time.monotonic() < deadline and driver.poll() is None, "the run did not start"
            time.sleep(0.01)
        workers = [child.pid for child in psutil.Process(driver.pid).children(recursive=True)]
        driver.send_signal(signal.SIGKILL)  # the driver only, not its process group
        driver.wait()
        killed = time.monotonic()
        at_kill = _published(out)
        while any(_alive(pid) for pid in workers) and time.monotonic() - killed < 5:
            time.sleep(0.01)
        gone_after = time.monotonic() - killed
        time.sleep(1.5)  # longer than a scene: a live worker would have published meanwhile
        assert _published(out) == at_kill
        assert gone_after < OUTLIVE_S[backend], f"workers outlived the driver by {gone_after:.2f} s"
    finally:
        for child in psutil.Process().children(recursive=True):
            child.kill()
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


def test_a_worker_whose_driver_is_gone_does_not_publish(tmp_path, monkeypatch):
    target = tmp_path / "a.tif"
    partial = partial_path(target)
    partial.write_bytes(b"finished")
    monkeypatch.setenv(PARENT_ENV, str(os.getppid() + 1_000_000))  # not our parent: gone
    with pytest.raises(DriverGoneError, match="not published"):
        publish(partial, target, overwrite=False)
    assert not target.exists()
    monkeypatch.setenv(PARENT_ENV, str(os.getppid()))
    publish(partial, target, overwrite=False)
    assert target.read_bytes() == b"finished"
