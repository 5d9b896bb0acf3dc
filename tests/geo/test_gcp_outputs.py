"""A scene georeferenced by GCPs only: its GeoTIFF/COG outputs carry the same GCPs and CRS
(pixel for pixel, not warped), the log says so, and a Zarr output is refused up front."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from diffris.errors import InputError
from diffris.inference.run import preflight
from diffris.inference.segment import segment_scene
from tests.archive.archive_helpers import (
    OPTIONS,
    PROMPTS,
    FieldPredictor,
    archive_whole_and_split,
    field_processor,
)

GCP_CRS = CRS.from_epsg(32633)
GCPS = [
    GroundControlPoint(row=0, col=0, x=500_000.0, y=5_000_000.0, id="nw"),
    GroundControlPoint(row=0, col=160, x=501_600.0, y=5_000_120.0, id="ne"),
    GroundControlPoint(row=200, col=0, x=499_880.0, y=4_998_000.0, id="sw"),
    GroundControlPoint(row=200, col=160, x=501_480.0, y=4_998_100.0, id="se"),
]


def write_gcp_scene(path: Path, width: int = 160, height: int = 200) -> Path:
    """An RGB uint8 GeoTIFF with GCPs and their CRS but no geotransform (as L1 imagery has)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width]
    base = 127 + 100 * np.sin(x / 9.0) * np.cos(y / 13.0)
    data = np.clip([base + rng.normal(0, 20, base.shape) for _ in range(3)], 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=width, height=height, count=3, dtype="uint8")
    with warnings.catch_warnings():  # no geotransform, on purpose
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.gcps = (GCPS, GCP_CRS)
            dst.write(data.astype(np.uint8))
    with rasterio.open(path) as src:  # what the test relies on: GCPs, no geotransform
        assert src.transform.is_identity and len(src.gcps[0]) == 4
    return path


def _georeferencing(path: Path) -> tuple[object, ...]:
    with rasterio.open(path) as src:
        points, crs = src.gcps
        return src.crs, src.transform.is_identity, [(p.row, p.col, p.x, p.y) for p in points], crs


@pytest.mark.parametrize("name", ["masks.tif", "masks.cog.tif"])
def test_outputs_carry_the_scenes_gcps_and_say_so(tmp_path: Path, caplog, name: str) -> None:
    caplog.set_level("INFO")
    scene = write_gcp_scene(tmp_path / "l1.tif")
    output = tmp_path / name
    segment_scene(scene, output, FieldPredictor(PROMPTS), PROMPTS, OPTIONS, model_id="field")
    crs, identity, points, gcp_crs = _georeferencing(output)
    assert crs is None and identity  # no made-up geotransform next to the GCPs
    assert points == [(p.row, p.col, p.x, p.y) for p in GCPS]
    assert gcp_crs == GCP_CRS
    assert "4 GCPs (EPSG:32633)" in caplog.text and "carry the same GCPs" in caplog.text
    assert "no CRS" not in caplog.text


def test_a_zarr_output_of_a_gcp_scene_is_refused_before_any_work(tmp_path: Path) -> None:
    scene = write_gcp_scene(tmp_path / "l1.tif")
    with pytest.raises(InputError, match="georeferenced by GCPs only.*GeoTIFF/COG.*gdalwarp"):
        segment_scene(
            scene, tmp_path / "m.zarr", FieldPredictor(PROMPTS), PROMPTS, OPTIONS, model_id="f"
        )
    assert not (tmp_path / "m.zarr").exists()


def test_a_split_gcp_scene_keeps_the_gcps_of_the_whole(tmp_path: Path) -> None:
    write_gcp_scene(tmp_path / "in" / "l1.tif")
    processor = field_processor()
    whole, split = archive_whole_and_split(tmp_path, processor, processor.job_options(OPTIONS))
    a, b = whole / "l1.tif", split / "l1.tif"
    assert _georeferencing(b) == _georeferencing(a)
    assert _georeferencing(a)[2] == [(p.row, p.col, p.x, p.y) for p in GCPS]
    with rasterio.open(a) as one, rasterio.open(b) as other:
        assert np.array_equal(one.read(), other.read())


def test_the_preflight_refuses_a_zarr_output_of_a_gcp_scene(tmp_path: Path) -> None:
    """Before the model loads: the same one-line reason as the sink's."""
    scene = write_gcp_scene(tmp_path / "l1.tif")
    with pytest.raises(InputError, match="georeferenced by GCPs only"):
        preflight([scene], [tmp_path / "m.zarr"], OPTIONS, prompts=PROMPTS, overwrite=False)
    assert preflight([scene], [tmp_path / "m.tif"], OPTIONS, prompts=PROMPTS, overwrite=False) == []
