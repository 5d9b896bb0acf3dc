"""The feature cache shared by real processes: two runs filling one entry at once, and a run
killed (SIGKILL) while it writes the cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from diffris.data.prompts import prompts_from_texts
from diffris.geo.sinks.spec import OutputDtype, OutputType
from diffris.inference.feature_cache import CacheDtype, FeatureCacheOptions
from diffris.inference.predictor import ModelPredictor
from diffris.inference.segment import SegmentOptions, segment_scene
from diffris.models.loading import load_model
from tests.inference.scenes import position_scene

TEXTS = ["the red roofs", "the ponds"]


@pytest.fixture
def one_thread():
    """The subprocesses run on one thread; so does this one, for bit-identical outputs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _command(scene: Path, out: Path, cache: Path, tile: int) -> list[str]:
    args = ["segment", str(scene), "-o", str(out), "--model", "tiny", "-q"]
    args += ["--tile", str(tile), "--overlap", "16", "--output-type", "prob"]
    args += ["--dtype", "float32", "--feature-cache", str(cache)]
    args += ["--feature-cache-dtype", "float32"]
    for text in TEXTS:
        args += ["-t", text]
    return [sys.executable, "-m", "diffris_cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as written:
        return written.read()


def _run(scene: Path, out: Path, tile: int, cache: Path | None = None) -> np.ndarray:
    """This process's run (one thread, as the subprocesses), probabilities read back."""
    prompts = prompts_from_texts(TEXTS)
    kept = FeatureCacheOptions(str(cache), dtype=CacheDtype.FLOAT32) if cache else None
    model = load_model("tiny")
    predictor = ModelPredictor(model, prompts, device=torch.device("cpu"), feature_cache=kept)
    options = SegmentOptions(
        tile=tile, overlap=16, output_type=OutputType.PROB, dtype=OutputDtype.FLOAT32
    )
    segment_scene(scene, out, predictor, prompts, options, model_id="tiny")
    return _read(out)


def _markers(cache: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in cache.glob("entries/*/tiles/*.json")}


def test_two_processes_filling_one_cache_at_once_then_a_third_reading_it(tmp_path, one_thread):
    scene = position_scene(tmp_path / "scene.tif", 200, 150)
    cache = tmp_path / "features"
    outs = [tmp_path / f"out{i}.tif" for i in range(2)]
    runs = [subprocess.Popen(_command(scene, o, cache, 64), env=_env()) for o in outs]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    filled = _markers(cache)
    assert len(filled) == 4 * 3  # every tile of the one entry both runs filled
    read = _run(scene, tmp_path / "read.tif", 64, cache)
    assert _markers(cache) == filled  # read, not rewritten
    expected = _run(scene, tmp_path / "uncached.tif", 64)
    assert np.array_equal(read, expected)
    for out in outs:
        assert np.array_equal(_read(out), expected), out


def test_a_run_killed_while_filling_the_cache_leaves_nothing_a_later_run_trusts(
    tmp_path, one_thread
):
    scene = position_scene(tmp_path / "scene.tif", 768, 512)
    cache = tmp_path / "features"
    process = subprocess.Popen(_command(scene, tmp_path / "killed.tif", cache, 256), env=_env())
    deadline = time.monotonic() + 180
    while len(_markers(cache)) < 2:  # mid-fill: some tiles kept, the rest to come
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(_markers(cache)) < 12  # 4 x 3 tiles: it was killed before the end
    rerun = _run(scene, tmp_path / "rerun.tif", 256, cache)
    assert len(_markers(cache)) == 12
    assert np.array_equal(rerun, _run(scene, tmp_path / "uncached.tif", 256))
