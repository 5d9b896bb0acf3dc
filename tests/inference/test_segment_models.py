"""The data path with each architecture's real tiny model (``model_preset``: tiny, rsrefseg-tiny).

The stand-in predictor of ``test_segment.py`` checks the stitcher's arithmetic; these check that a
real model of either architecture goes through the same path unchanged: batching, prompts,
formats, placement and nodata.
"""

import numpy as np
import pytest
import rasterio
import torch

from diffris.data.prompts import Prompt
from diffris.geo.sinks.spec import OutputDtype, OutputFormat, OutputType
from diffris.inference.predictor import ModelPredictor
from diffris.inference.segment import SegmentOptions, segment_scene
from diffris.models.loading import load_model
from tests.inference.scenes import CRS_UTM, TRANSFORM, position_scene

PROMPTS = [Prompt(id="roofs", text="the red roofs"), Prompt(id="ponds", text="the ponds")]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model(model_preset):
    return load_model(model_preset)


def _probabilities(scene, out, model, prompts, **options) -> np.ndarray:
    """float32 probabilities of ``scene`` written to ``out`` and read back, (P, H, W)."""
    predictor = ModelPredictor(model, prompts, device=CPU)
    options = SegmentOptions(output_type=OutputType.PROB, dtype=OutputDtype.FLOAT32, **options)
    segment_scene(scene, out, predictor, prompts, options, model_id="m")
    with rasterio.open(out) as written:
        return written.read()


def test_outputs_are_identical_whatever_the_batch_size(tmp_path, model):
    scene = position_scene(tmp_path / "scene.tif", 300, 200)
    one = _probabilities(scene, tmp_path / "b1.tif", model, PROMPTS, tile=128, batch_size=1)
    three = _probabilities(scene, tmp_path / "b3.tif", model, PROMPTS, tile=128, batch_size=3)
    assert one.shape == (2, 200, 300) and np.array_equal(one, three)
    assert not np.allclose(one[0], one[1])  # two prompts, two maps


def test_k_prompts_in_one_run_equal_k_one_prompt_runs_bit_for_bit(tmp_path, model):
    scene = position_scene(tmp_path / "scene.tif", 200, 150)
    together = _probabilities(scene, tmp_path / "k.tif", model, PROMPTS, tile=128)
    alone = [
        _probabilities(scene, tmp_path / f"{p.id}.tif", model, [p], tile=128)[0] for p in PROMPTS
    ]
    assert np.array_equal(together, np.stack(alone))


def test_each_tile_lands_where_it_was_read_without_seams(tmp_path, model):
    """Without overlap, the scene's output is exactly the model's output on each window."""
    scene = position_scene(tmp_path / "scene.tif", 256, 128)
    written = _probabilities(scene, tmp_path / "p.tif", model, PROMPTS, tile=128, overlap=0)
    with rasterio.open(scene) as source:
        pixels = source.read()
    tiles = np.stack([pixels[:, :, :128], pixels[:, :, 128:]])
    expected = ModelPredictor(model, PROMPTS, device=CPU).predict(tiles)
    assert np.array_equal(written, np.concatenate(list(expected), axis=2))


@pytest.mark.parametrize(
    ("name", "output_format"),
    [("m.tif", OutputFormat.GTIFF), ("m.tif", OutputFormat.COG), ("m.zarr", None)],
)
def test_every_format_carries_the_scenes_crs_and_transform(tmp_path, model, name, output_format):
    scene = position_scene(tmp_path / "scene.tif", 200, 130)
    out = tmp_path / name
    predictor = ModelPredictor(model, PROMPTS, device=CPU)
    options = SegmentOptions(tile=128, format=output_format)
    segment_scene(scene, out, predictor, PROMPTS, options, model_id=model.config.backbone.preset)
    if name.endswith(".zarr"):
        xr = pytest.importorskip("xarray")
        pytest.importorskip("rioxarray")
        array = next(v for v in xr.open_zarr(out).data_vars.values() if v.ndim == 3)
        assert array.rio.crs == CRS_UTM and array.rio.transform().almost_equals(TRANSFORM)
        assert array.shape == (2, 130, 200)
        return
    with rasterio.open(out) as written:
        assert written.crs == CRS_UTM and written.transform == TRANSFORM
        assert (written.count, written.height, written.width) == (2, 130, 200)
        assert written.tags()["model"] == model.config.backbone.preset
        assert set(np.unique(written.read())) <= {0, 1}
        if output_format is OutputFormat.COG:
            assert written.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_nodata_is_kept_and_tiles_of_pure_nodata_never_reach_the_model(tmp_path, model):
    scene = position_scene(tmp_path / "scene.tif", 512, 512, nodata_border=128)
    predictor = ModelPredictor(model, PROMPTS, device=CPU)
    encoded = []
    encode_image = model.encode_image
    model.encode_image = lambda pixels: encoded.append(len(pixels)) or encode_image(pixels)
    try:
        result = segment_scene(
            scene,
            tmp_path / "m.tif",
            predictor,
            PROMPTS,
            SegmentOptions(tile=128, overlap=0),
            model_id="m",
        )
    finally:
        del model.encode_image
    with rasterio.open(tmp_path / "m.tif") as written:
        masks = written.read()
    assert (result.tiles, result.skipped_tiles) == (16, 12) and sum(encoded) == 4
    assert (masks[:, :128] == 255).all() and (masks[:, :, -128:] == 255).all()
    assert set(np.unique(masks[:, 128:384, 128:384])) <= {0, 1}
