"""Every kind of input scene goes through segment_scene to a mask on the scene's own grid."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from diffris.data.prompts import Prompt
from diffris.inference.segment import SegmentOptions, segment_scene

UTM = CRS.from_epsg(32633)
GRID = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
PROMPTS = [Prompt(id="bright", text="the bright things")]
HEIGHT, WIDTH = 150, 210


class BrightnessPredictor:
    """Stand-in model: probability = the tile's own brightness, so masks follow the image."""

    prompt_count = 1

    def __init__(self):
        self.tiles = []

    def predict(self, tiles):
        self.tiles.append(tiles.copy())
        return (tiles.astype(np.float32).mean(axis=1, keepdims=True) / 255.0).astype(np.float32)


def _write(path, data, *, crs=UTM, nodata=None, colorinterp=None):
    profile = dict(
        driver="GTiff",
        width=WIDTH,
        height=HEIGHT,
        count=data.shape[0],
        dtype=str(data.dtype),
        transform=GRID,
    )
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colorinterp:
            dst.colorinterp = colorinterp
    return path


def _gradient(bands, dtype, scale):
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    ramp = (x / WIDTH)[None].repeat(bands, axis=0)
    return (ramp * scale).astype(dtype)


CASES = {
    "1-band uint8": dict(data=_gradient(1, np.uint8, 255)),
    "3-band uint16": dict(data=_gradient(3, np.uint16, 4000) + 300),
    "4-band with --bands": dict(data=_gradient(4, np.uint16, 3000), bands=(4, 3, 2)),
    "float32 with NaN nodata": dict(data=_gradient(3, np.float32, 1.0), nan=True, nodata=np.nan),
    "no CRS": dict(data=_gradient(3, np.uint8, 255), crs=None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_input_kinds_give_a_mask_on_the_scene_grid(tmp_path, case, caplog):
    spec = CASES[case]
    data = spec["data"].copy()
    if spec.get("nan"):
        data[:, :, :30] = np.nan
    scene = _write(
        tmp_path / "scene.tif", data, crs=spec.get("crs", UTM), nodata=spec.get("nodata")
    )
    out = tmp_path / "mask.tif"
    predictor = BrightnessPredictor()
    options = SegmentOptions(tile=128, overlap=32, bands=spec.get("bands"))
    segment_scene(scene, out, predictor, PROMPTS, options, model_id="stand-in")
    with rasterio.open(out) as written:
        mask = written.read(1)
        assert (written.width, written.height, written.transform) == (WIDTH, HEIGHT, GRID)
        assert written.crs == spec.get("crs", UTM)
    assert predictor.tiles[0].dtype == np.uint8
    valid = slice(30, None) if spec.get("nan") else slice(0, None)
    # The bright (right) side is in the mask, the dark (left) side is not.
    assert mask[:, -20:].min() == 1 and mask[:, valid][:, :20].max() == 0
    if spec.get("nan"):
        assert (mask[:, :30] == 255).all()
    if spec.get("crs", UTM) is None:
        assert "no CRS" in caplog.text


def test_the_stretch_is_scene_level_and_recorded(tmp_path):
    data = _gradient(3, np.uint16, 4000) + 300
    scene = _write(tmp_path / "scene.tif", data)
    out = tmp_path / "mask.tif"
    predictor = BrightnessPredictor()
    segment_scene(
        scene, out, predictor, PROMPTS, SegmentOptions(tile=64, overlap=0), model_id="stand-in"
    )
    tiles = np.concatenate(predictor.tiles)
    # Same source value -> same 8-bit value in every tile: column 0 of tile row 0 and 1.
    assert np.array_equal(tiles[0, :, 0, 0], tiles[4, :, 0, 0])
    with rasterio.open(out) as written:
        tags = written.tags()
    assert tags["stretch_method"] == "percentile" and tags["stretch_percentiles"] == "2,98"
