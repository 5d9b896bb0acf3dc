"""The feature cache (``--feature-cache``): outputs as without it, torn entries, eviction, keys.

Every test runs a real tiny model of each architecture (``model_preset``) over a real GeoTIFF
through :func:`segment_scene`, and compares written probabilities.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from diffris.data.prompts import Prompt
from diffris.errors import InputError
from diffris.geo.sinks.spec import OutputDtype, OutputType
from diffris.inference.feature_cache import CacheDtype, FeatureCacheOptions
from diffris.inference.predictor import ModelPredictor
from diffris.inference.segment import SegmentOptions, segment_scene
from diffris.models.loading import load_model
from diffris.models.registry import build_model
from tests.inference.scenes import position_scene

CPU = torch.device("cpu")
_OUTPUTS = itertools.count()
OLD = [Prompt(id="roofs", text="the red roofs")]
NEW = [Prompt(id="ponds", text="the ponds"), Prompt(id="road", text="the long road")]
OPTIONS = SegmentOptions(
    tile=64, overlap=16, output_type=OutputType.PROB, dtype=OutputDtype.FLOAT32
)


@pytest.fixture(scope="module")
def model(model_preset):
    return load_model(model_preset)


class Run:
    """Segments scenes with one model and returns the written probabilities (P, H, W)."""

    def __init__(self, tmp_path: Path, model) -> None:
        self.tmp_path = tmp_path
        self.model = model
        self.encoded = 0

    def __call__(
        self,
        scene: Path,
        prompts: list[Prompt],
        cache: FeatureCacheOptions | None = None,
        options: SegmentOptions = OPTIONS,
    ) -> np.ndarray:
        predictor = ModelPredictor(self.model, prompts, device=CPU, feature_cache=cache)
        encode = predictor._encode_in_chunks
        predictor._encode_in_chunks = lambda pixels: self._count(encode, pixels)  # type: ignore
        out = self.tmp_path / f"out{next(_OUTPUTS)}.tif"
        segment_scene(scene, out, predictor, prompts, options, model_id="m")
        with rasterio.open(out) as written:
            return written.read()

    def _count(self, encode, pixels):
        self.encoded += len(pixels)
        return encode(pixels)


def _entries(folder: Path) -> list[Path]:
    return sorted((folder / "entries").iterdir())


def test_new_prompts_on_a_cached_scene_match_an_uncached_run_bit_for_bit(tmp_path, model):
    scene = position_scene(tmp_path / "scene.tif", 150, 100)
    run = Run(tmp_path, model)
    cache = FeatureCacheOptions(str(tmp_path / "features"), dtype=CacheDtype.FLOAT32)
    uncached = run(scene, NEW)
    run.encoded = 0
    run(scene, OLD, cache)  # fills the cache
    filled = run.encoded
    cached = run(scene, NEW, cache)
    assert filled == 6 and run.encoded == filled  # the second run encoded no tile
    assert np.array_equal(cached, uncached)


def test_float16_runs_that_fill_and_that_read_the_cache_agree_bit_for_bit(tmp_path, model):
    scene = position_scene(tmp_path / "scene.tif", 150, 100)
    run = Run(tmp_path, model)
    cache = FeatureCacheOptions(str(tmp_path / "features"))  # float16, the default
    filling = run(scene, NEW, cache)
    reading = run(scene, NEW, cache)
    uncached = run(scene, NEW)
    assert run.encoded == 6 + 6  # the filling run and the uncached one
    assert np.array_equal(filling, reading)
    difference = np.abs(filling - uncached).max()
    assert 0 < difference < 2e-2  # float16 rounding of the features, nothing else


def test_a_torn_tile_is_never_used_and_is_rewritten(tmp_path, model):
    scene = position_scene(tmp_path / "scene.tif", 150, 100)
    run = Run(tmp_path, model)
    cache = FeatureCacheOptions(str(tmp_path / "features"), dtype=CacheDtype.FLOAT32)
    uncached = run(scene, NEW)
    run(scene, OLD, cache)
    (entry,) = _entries(tmp_path / "features")
    # tile (0, 1)'s chunk of the first array, as a write cut short by SIGKILL leaves it
    (torn,) = (p for p in (entry / "features.zarr/0/c/0/1").rglob("*") if p.is_file())
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    (entry / "tiles" / "1_2.json").unlink()  # killed after its chunks, before its marker
    run.encoded = 0
    assert np.array_equal(run(scene, NEW, cache), uncached)
    assert run.encoded == 2  # exactly the two damaged tiles were computed again
    run.encoded = 0
    assert np.array_equal(run(scene, NEW, cache), uncached)
    assert run.encoded == 0  # ... and rewritten whole


def test_eviction_keeps_the_most_recently_used_scenes(tmp_path, model):
    run = Run(tmp_path, model)
    scenes = [position_scene(tmp_path / f"s{i}.tif", 100 + 10 * i, 64) for i in range(4)]
    folder = tmp_path / "features"
    run(scenes[0], OLD, FeatureCacheOptions(str(folder)))
    (entry,) = _entries(folder)
    one = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
    cache = FeatureCacheOptions(str(folder), max_bytes=int(2.5 * one))  # room for two scenes
    run(scenes[1], OLD, cache)
    run(scenes[0], OLD, cache)  # scene 0 used again: now the most recent
    run(scenes[2], OLD, cache)  # evicts scene 1, the least recently used
    names = [e.name.split("-")[0] for e in _entries(folder)]
    assert names == ["s0", "s2"]
    run.encoded = 0
    run(scenes[0], NEW, cache)
    assert run.encoded == 0
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert total <= cache.max_bytes + 1024  # + the folder's own marker


def test_another_grid_scene_or_backbone_misses(tmp_path, model):
    scene = position_scene(tmp_path / "scene.tif", 150, 100)
    other_scene = position_scene(tmp_path / "other.tif", 150, 100)
    run = Run(tmp_path, model)
    cache = FeatureCacheOptions(str(tmp_path / "features"))
    run(scene, OLD, cache)
    run.encoded = 0
    run(scene, NEW, cache, SegmentOptions(tile=64, overlap=8))  # another grid
    run(other_scene, NEW, cache)  # another scene
    run(scene, NEW, FeatureCacheOptions(cache.folder, dtype=CacheDtype.FLOAT32))
    assert run.encoded == 6 + 6 + 6
    backbone = model.config.backbone
    other = copy.copy(model)  # the same weights, recorded as another backbone
    other.config = dataclasses.replace(
        model.config, backbone=dataclasses.replace(backbone, fingerprint="0" * 16)
    )
    other_run = Run(tmp_path, other)
    other_run(scene, NEW, cache)
    assert other_run.encoded == 6
    assert len(_entries(tmp_path / "features")) == 5


def test_trained_image_weights_are_part_of_the_key(tmp_path, model, model_preset):
    """DiffRIS's image features are the frozen VAE's: heads trained otherwise share them.
    RSRefSeg's encoders carry trained LoRA: another training's features are its own."""
    scene = position_scene(tmp_path / "scene.tif", 150, 100)
    cache = FeatureCacheOptions(str(tmp_path / "features"))
    Run(tmp_path, model)(scene, OLD, cache)
    retrained = build_model(model_preset, seed=1)
    with torch.no_grad():
        for parameter in retrained.trainable_parameters():
            parameter.add_(0.01)
    run = Run(tmp_path, retrained)
    run(scene, NEW, cache)
    assert run.encoded == (0 if model.image_features_frozen else 6)


def test_a_changed_scene_of_the_same_size_and_time_misses(tmp_path, model):
    scene = position_scene(tmp_path / "scene.tif", 150, 100)
    run = Run(tmp_path, model)
    cache = FeatureCacheOptions(str(tmp_path / "features"), dtype=CacheDtype.FLOAT32)
    run(scene, OLD, cache)
    info = os.stat(scene)
    with rasterio.open(scene, "r+") as dst:  # same size on disk, other pixels
        dst.write(255 - dst.read())
    os.utime(scene, ns=(info.st_atime_ns, info.st_mtime_ns))
    run.encoded = 0
    assert np.array_equal(run(scene, NEW, cache), run(scene, NEW))
    assert run.encoded == 6 + 6


def test_a_folder_that_is_not_a_cache_is_refused(tmp_path, model):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(InputError, match="not a diffris feature cache"):
        ModelPredictor(model, OLD, device=CPU, feature_cache=FeatureCacheOptions(str(folder)))
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]  # nothing written
