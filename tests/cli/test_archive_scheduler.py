"""``diffris archive --scheduler tcp://...`` with workers started in another folder."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
from typer.testing import CliRunner

from diffris.archive.processor import SegmentProcessor
from diffris_cli.app import app
from tests.archive.archive_helpers import CRS, PROMPTS, TRANSFORM, write_scene

runner = CliRunner()
DEMO = Path(__file__).resolve().parents[2] / "examples" / "models" / "demo"


@pytest.fixture
def scheduler_elsewhere(tmp_path):
    """A real ``dask scheduler`` and one ``dask worker`` on 127.0.0.1, both run in another folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    info = elsewhere / "scheduler.json"
    common = dict(cwd=elsewhere, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    module = [sys.executable, "-m"]
    scheduler = subprocess.Popen(
        [*module, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
        + ["--no-dashboard", "--scheduler-file", str(info)],
        **common,
    )
    processes = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not info.exists():
            assert scheduler.poll() is None and time.monotonic() < deadline, "no scheduler"
            time.sleep(0.1)
        worker = subprocess.Popen(
            [*module, "distributed.cli.dask_worker", "--scheduler-file", str(info)]
            + ["--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
            **common,
        )
        processes.append(worker)
        address = json.loads(info.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_relative_model_folder_reaches_workers_started_elsewhere(
    tmp_path, monkeypatch, scheduler_elsewhere
):
    project = tmp_path / "project"
    shutil.copytree(DEMO, project / "models" / "demo")
    write_scene(project / "scenes" / "a.tif", width=96, height=64)
    (project / "prompts.txt").write_text("red roofs\n")
    monkeypatch.chdir(project)
    args = ["archive", "scenes", "--prompts", "prompts.txt", "-o", "masks"]
    args += ["--model", "models/demo", "--scheduler", scheduler_elsewhere]
    args += ["--tile", "64", "--overlap", "16", "--threads", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["done"] == 1
    with rasterio.open(project / "masks" / "a.tif") as written:
        assert written.crs == CRS and written.transform == TRANSFORM
        assert written.tags()["model"].startswith("demo@")


def test_the_processor_sent_to_workers_names_folders_absolutely(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    processor = SegmentProcessor(model="runs/best", prompts=PROMPTS, pretrained="weights/sd15")
    assert processor.model == str(tmp_path / "runs" / "best")
    assert processor.pretrained == str(tmp_path / "weights" / "sd15")
    assert SegmentProcessor(model="tiny", prompts=PROMPTS).model == "tiny"  # a preset stays one
