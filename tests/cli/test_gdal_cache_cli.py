"""``--gdal-cache`` on ``segment`` and ``archive``: the bound the run holds GDAL's block cache to,
shown by the dry run, in effect while tiles are read and written (here and in worker
processes), and without effect on the outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from diffris.archive.pool import ProcessPoolBackend
from diffris.archive.runner import archive
from diffris.geo.gdal_cache import gdal_cache_size
from diffris_cli.app import app
from tests.archive.archive_helpers import (
    OPTIONS,
    PROMPTS,
    FieldPredictor,
    FieldProcessor,
)
from tests.archive.archive_helpers import write_scene as write_archive_scene
from tests.inference.scenes import position_scene

runner = CliRunner()
MIB = 2**20


@pytest.fixture(autouse=True)
def _no_cache_settings(monkeypatch):
    """The default, not this machine's settings."""
    monkeypatch.delenv("DIFFRIS_GDAL_CACHE", raising=False)
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return position_scene(tmp_path / "scene.tif", 300, 260)


def _segment(scene: Path, out: Path, *extra: str):
    args = ["segment", str(scene), "-t", "the river", "-o", str(out), "--model", "tiny"]
    return runner.invoke(app, [*args, "--tile", "256", "--json", *extra])


def _plan(scene: Path, tmp_path: Path, *extra: str) -> dict:
    result = _segment(scene, tmp_path / "m.tif", "--dry-run", *extra)
    assert result.exit_code == 0, result.output
    (plan,) = json.loads(result.stdout)["scenes"]
    return plan


def test_the_dry_run_shows_the_bound_and_counts_it_in_the_estimate(tmp_path, scene, monkeypatch):
    default = _plan(scene, tmp_path)
    small = _plan(scene, tmp_path, "--gdal-cache", "48M")
    large = _plan(scene, tmp_path, "--gdal-cache", "1G")
    assert default["gdal_cache_mib"] == 32
    assert (small["gdal_cache_mib"], large["gdal_cache_mib"]) == (48, 1024)
    gap = large["estimated_memory_mib"] - small["estimated_memory_mib"]
    assert gap == pytest.approx(1024 - 48, abs=0.2)
    monkeypatch.setenv("DIFFRIS_GDAL_CACHE", "100M")
    assert _plan(scene, tmp_path)["gdal_cache_mib"] == 100
    assert _plan(scene, tmp_path, "--gdal-cache", "20M")["gdal_cache_mib"] == 20


def test_a_gdal_cachemax_of_the_user_is_kept_and_the_table_says_whose_it_is(
    tmp_path, scene, monkeypatch
):
    monkeypatch.setenv("GDAL_CACHEMAX", "200")  # GDAL's reading: megabytes
    result = runner.invoke(
        app,
        [
            "segment",
            str(scene),
            "-t",
            "x",
            "-o",
            str(tmp_path / "m.tif"),
            "--model",
            "tiny",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "GDAL's block cache: 200 MiB (GDAL_CACHEMAX)" in result.stdout


def test_a_run_holds_to_the_bound_and_writes_what_gdal_s_default_writes(tmp_path):
    scene = position_scene(tmp_path / "small.tif", 200, 180)  # one tile: two quick runs
    before = gdal_cache_size()
    bounded = _segment(scene, tmp_path / "bounded.tif", "--gdal-cache", "40M")
    assert bounded.exit_code == 0, bounded.output
    assert json.loads(bounded.stdout)["scenes"][0]["gdal_cache_mib"] == 40
    assert gdal_cache_size() == before  # the command leaves the process as it found it
    unbounded = _segment(scene, tmp_path / "gdal.tif", "--gdal-cache", "5%")
    assert unbounded.exit_code == 0, unbounded.output
    assert json.loads(unbounded.stdout)["scenes"][0]["gdal_cache_mib"] > 40
    with rasterio.open(tmp_path / "bounded.tif") as a, rasterio.open(tmp_path / "gdal.tif") as b:
        assert np.array_equal(a.read(), b.read())


@pytest.mark.parametrize("command", ["segment", "archive"])
def test_a_bad_size_is_one_line_before_any_work(tmp_path, scene, command):
    args = [command, str(scene), "-o", str(tmp_path / "out"), "--model", "tiny"]
    args += [
        "--prompts" if command == "archive" else "-t",
        str(_prompts(tmp_path)),
        "--gdal-cache",
        "64",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: --gdal-cache '64' has no unit; give e.g. --gdal-cache 64M, 1G or 5% (of the RAM)"
    ]
    assert not (tmp_path / "out").exists()


def _prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.yaml"
    path.write_text("- id: roofs\n  text: the red roofs\n")
    return path


class _CacheProbe(FieldPredictor):
    """Records GDAL's cache size while the scene is being read and written."""

    def __init__(self, record: Path) -> None:
        super().__init__(PROMPTS)
        self.record = record

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        self.record.write_text(str(gdal_cache_size()))
        return super().predict(tiles)


@dataclass
class _CacheProbeProcessor(FieldProcessor):
    record: str = ""

    def load_predictor(self, device: str) -> _CacheProbe:
        return _CacheProbe(Path(self.record))


def test_a_worker_process_holds_its_scenes_to_the_processor_s_bound(tmp_path):
    write_archive_scene(tmp_path / "in" / "a.tif")
    record = tmp_path / "cache.txt"
    processor = _CacheProbeProcessor(
        model="stand-in", prompts=PROMPTS, gdal_cache=36 * MIB, record=str(record)
    )
    report = archive(
        tmp_path / "in",
        out_dir=tmp_path / "out",
        processor=processor,
        model="stand-in",
        model_id="stand-in",
        prompts=PROMPTS,
        options=processor.job_options(OPTIONS),
        backend=ProcessPoolBackend(1, threads=1),
    )
    assert report.counts["done"] == 1, report.to_dict()
    assert int(record.read_text()) == 36 * MIB
