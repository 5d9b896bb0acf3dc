"""End to end through segment_scene with a stand-in predictor and real rasterio/zarr files."""

import numpy as np
import pytest
import rasterio

from diffris.data.prompts import Prompt
from diffris.errors import InputError, OutputExistsError
from diffris.geo.sinks.spec import OutputDtype, OutputFormat, OutputType
from diffris.inference.segment import SegmentOptions, segment_scene
from tests.inference.scenes import (
    CRS_UTM,
    TRANSFORM,
    PositionPredictor,
    position_scene,
    smooth_field,
)

PROMPTS = [Prompt(id="a", text="the first thing"), Prompt(id="b", text="the second thing")]


def _prob_options(**changes) -> SegmentOptions:
    return SegmentOptions(output_type=OutputType.PROB, dtype=OutputDtype.FLOAT32, **changes)


@pytest.mark.parametrize(
    ("width", "height", "tile", "overlap"),
    [(1000, 777, 256, 64), (300, 1300, 128, 32), (200, 150, 256, 64), (1100, 600, 512, 64)],
)
def test_stitched_scene_equals_the_smooth_field_everywhere(tmp_path, width, height, tile, overlap):
    scene = position_scene(tmp_path / "scene.tif", width, height)
    out = tmp_path / "probs.tif"
    options = _prob_options(tile=tile, overlap=overlap, batch_size=3)
    result = segment_scene(scene, out, PositionPredictor(2), PROMPTS, options, model_id="stand-in")
    y, x = np.mgrid[0:height, 0:width]
    with rasterio.open(out) as written:
        assert (written.width, written.height, written.count) == (width, height, 2)
        assert written.crs == CRS_UTM and written.transform == TRANSFORM
        assert written.descriptions == ("the first thing", "the second thing")
        for band in range(2):
            expected = smooth_field(x, y, phase=band)
            np.testing.assert_allclose(written.read(band + 1), expected, atol=1e-3)
    assert result.tiles >= 1 and result.skipped_tiles == 0


def test_output_is_identical_whatever_the_batch_size(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 700, 650)
    outputs = []
    for batch in (1, 2, 5):
        out = tmp_path / f"b{batch}.tif"
        segment_scene(
            scene,
            out,
            PositionPredictor(2),
            PROMPTS,
            _prob_options(tile=256, batch_size=batch),
            model_id="stand-in",
        )
        with rasterio.open(out) as written:
            outputs.append(written.read())
    assert all(np.array_equal(outputs[0], other) for other in outputs[1:])


def test_nodata_border_is_nodata_in_the_mask_and_tiles_of_pure_nodata_are_skipped(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 900, 900, nodata_border=300)
    out = tmp_path / "mask.tif"
    predictor = PositionPredictor(2)
    result = segment_scene(
        scene, out, predictor, PROMPTS, SegmentOptions(tile=128, overlap=0), model_id="stand-in"
    )
    with rasterio.open(out) as written:
        masks = written.read()
        assert written.nodata == 255
    assert (masks[:, :300, :] == 255).all() and (masks[:, -300:, :] == 255).all()
    inside = masks[:, 300:600, 300:600]
    assert set(np.unique(inside)) <= {0, 1} and inside.max() == 1 and inside.min() == 0
    assert result.skipped_tiles > 0 and predictor.tiles_seen == result.tiles - result.skipped_tiles


def test_existing_output_is_refused_before_any_work_and_replaced_with_overwrite(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 300, 300)
    out = tmp_path / "mask.tif"
    out.write_bytes(b"precious")
    predictor = PositionPredictor(2)
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        segment_scene(scene, out, predictor, PROMPTS, SegmentOptions(tile=128), model_id="x")
    assert predictor.calls == 0 and out.read_bytes() == b"precious"
    segment_scene(
        scene, out, predictor, PROMPTS, SegmentOptions(tile=128), model_id="x", overwrite=True
    )
    with rasterio.open(out) as written:
        assert written.count == 2


def test_failure_mid_scene_leaves_nothing_at_the_output_path(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 600, 600)
    out = tmp_path / "mask.tif"

    class Failing(PositionPredictor):
        def predict(self, tiles):
            if self.calls == 2:
                raise RuntimeError("device lost")
            return super().predict(tiles)

    with pytest.raises(RuntimeError, match="device lost"):
        segment_scene(
            scene, out, Failing(2), PROMPTS, SegmentOptions(tile=128, batch_size=2), model_id="x"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_zarr_and_cog_outputs_carry_the_grid(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 520, 300)
    cog = tmp_path / "mask.tif"
    segment_scene(
        scene,
        cog,
        PositionPredictor(2),
        PROMPTS,
        SegmentOptions(tile=256, format=OutputFormat.COG),
        model_id="x",
    )
    with rasterio.open(cog) as written:
        assert written.crs == CRS_UTM and written.transform == TRANSFORM
        assert written.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert written.tags()["model"] == "x"
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    store = tmp_path / "mask.zarr"
    segment_scene(
        scene, store, PositionPredictor(2), PROMPTS, SegmentOptions(tile=256), model_id="x"
    )
    dataset = xr.open_zarr(store)
    array = next(v for v in dataset.data_vars.values() if v.ndim == 3)
    assert array.rio.crs == CRS_UTM
    assert array.rio.transform().almost_equals(TRANSFORM)
    assert array.shape == (2, 300, 520)


def test_tile_that_is_not_a_multiple_of_64_is_refused(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 300, 300)
    with pytest.raises(InputError, match="--tile 500 is not a multiple of 64"):
        segment_scene(
            scene,
            tmp_path / "m.tif",
            PositionPredictor(1),
            PROMPTS[:1],
            SegmentOptions(tile=500),
            model_id="x",
        )


@pytest.mark.parametrize("cuts", [(0, 300, 777), (0, 448, 512, 777), (0, 100, 777)])
def test_parts_of_a_scene_stacked_equal_the_whole_scene(tmp_path, cuts):
    scene = position_scene(tmp_path / "scene.tif", 500, 777)
    options = _prob_options(tile=128, overlap=32)
    whole = tmp_path / "whole.tif"
    segment_scene(scene, whole, PositionPredictor(2), PROMPTS, options, model_id="x")
    parts = []
    for index, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        out = tmp_path / f"part{index}.tif"
        result = segment_scene(
            scene, out, PositionPredictor(2), PROMPTS, options, model_id="x", rows=(start, stop)
        )
        assert result.height == stop - start
        with rasterio.open(out) as written:
            assert written.transform == TRANSFORM @ TRANSFORM.translation(0, start)
            parts.append(written.read())
    with rasterio.open(whole) as written:
        assert np.array_equal(np.concatenate(parts, axis=1), written.read())


def test_rows_outside_the_scene_are_refused(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 300, 300)
    with pytest.raises(InputError, match="rows 200:400 are not a range inside the scene's 300"):
        segment_scene(
            scene,
            tmp_path / "m.tif",
            PositionPredictor(1),
            PROMPTS[:1],
            SegmentOptions(tile=128),
            model_id="x",
            rows=(200, 400),
        )
