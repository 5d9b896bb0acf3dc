"""kill -9 of a whole run mid-scene, and a concurrent second run, with real processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from diffris.archive.ledger import Ledger
from diffris.archive.lock import ArchiveLockedError
from diffris.archive.runner import EXIT_OK, archive
from tests.archive.archive_helpers import PROMPTS, field_processor, job_options, write_scene

ROOT = Path(__file__).resolve().parents[2]
RUNNER = """
import sys
from pathlib import Path
from diffris.archive.runner import archive
from tests.archive.archive_helpers import PROMPTS, field_processor, job_options
report = archive(Path(sys.argv[1]), out_dir=Path(sys.argv[2]), model="stand-in",
                 processor=field_processor(delay=float(sys.argv[3])), model_id="field-v1",
                 prompts=PROMPTS, options=job_options())
sys.exit(report.exit_code)
"""
NAMES = [f"s{index}.tif" for index in range(4)]


def _archive(source, out, **kw):
    return archive(
        source,
        out_dir=out,
        processor=field_processor(**kw),
        model="stand-in",
        model_id="field-v1",
        prompts=PROMPTS,
        options=job_options(),
    )


def _start(source, out, delay):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(source), str(out), str(delay)],
        env=env,
        cwd=ROOT,
        start_new_session=True,  # its own process group: kill the whole run at once
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail("timed out waiting for the run")


@pytest.fixture
def scenes(tmp_path):
    for index, name in enumerate(NAMES):
        write_scene(tmp_path / "in" / name, seed=index)
    return tmp_path


def test_kill_9_mid_scene_then_rerun_gives_identical_outputs(scenes):
    reference = _archive(scenes / "in", scenes / "reference")
    assert reference.exit_code == EXIT_OK
    out = scenes / "out"
    run = _start(scenes / "in", out, delay=0.3)
    try:
        # Mid-scene: the second scene's temporary output exists, the first is published.
        _wait_for(lambda: (out / "s0.tif").exists() and any(out.glob(".s1.tif.partial-*")))
        with pytest.raises(ArchiveLockedError, match=f"pid {run.pid} on"):
            _archive(scenes / "in", out)  # a concurrent run exits at once
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    # Nothing partial at an output path: what exists is complete and right.
    present = [name for name in NAMES if (out / name).exists()]
    assert "s0.tif" in present and "s1.tif" not in present
    for name in present:
        assert np.array_equal(_pixels(out / name), _pixels(scenes / "reference" / name))
    with Ledger.for_output(out, readonly=True) as ledger:
        assert {r.input.rsplit("/", 1)[1]: r.status for r in ledger.rows()}["s1.tif"] == "running"

    rerun = _archive(scenes / "in", out)
    assert rerun.exit_code == EXIT_OK
    reasons = {r.output.rsplit("/", 1)[1]: (r.status, r.reason) for r in rerun.results}
    assert reasons["s0.tif"] == ("skipped", "done")
    assert reasons["s1.tif"] == ("done", "interrupted")
    for name in NAMES:
        assert np.array_equal(_pixels(out / name), _pixels(scenes / "reference" / name))
    assert not list(out.glob(".*partial*"))  # the killed run's temporary file was removed
    with Ledger.for_output(out, readonly=True) as ledger:
        row = next(r for r in ledger.rows() if r.input.endswith("s1.tif"))
    assert (row.status, row.interruptions, row.failures) == ("done", 1, 0)


def test_a_second_run_started_while_one_is_active_exits_at_once(scenes):
    out = scenes / "out"
    first = _start(scenes / "in", out, delay=0.3)
    try:
        _wait_for(lambda: any(out.glob(".s0.tif.partial-*")))
        second = _start(scenes / "in", out, delay=0.0)
        started = time.monotonic()
        _, stderr = second.communicate(timeout=30)
        assert second.returncode != 0
        assert b"another diffris archive run (pid" in stderr
        assert time.monotonic() - started < 15  # startup only: it does no work
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def _pixels(path):
    with rasterio.open(path) as src:
        return src.read()
