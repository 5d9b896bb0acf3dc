"""Masks are data bands, not a photo: MINISBLACK, no alpha, and every band survives gdalwarp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.geo.band_checks import assert_bands_survive_warp, photometric_problems
from tests.geo.sink_helpers import cog_problems, make_spec, write_output

NAMES = {"gtiff": "masks.tif", "cog": "masks.cog.tif"}


def _masks(count: int, height: int = 96, width: int = 150) -> np.ndarray:
    """(count, H, W) 0/1 masks; the last band is mostly 0, as a rare class would be."""
    rng = np.random.default_rng(count)
    data = (rng.random((count, height, width)) > 0.5).astype(np.uint8)
    data[-1] = rng.random((height, width)) > 0.9
    return data


@pytest.mark.parametrize("fmt", ["gtiff", "cog"])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_every_prompt_band_is_grey_data_and_survives_a_warp(
    tmp_path: Path, fmt: str, count: int
) -> None:
    spec = make_spec(prompts=[(f"p{i}", f"prompt {i}") for i in range(count)], height=96)
    path = tmp_path / NAMES[fmt]
    data = _masks(count)
    write_output(path, spec, data)
    assert photometric_problems(path) == []
    assert_bands_survive_warp(path)
    with rasterio.open(path) as dataset:
        np.testing.assert_array_equal(dataset.read(), data)
    if fmt == "cog":  # retagged in place: still a valid COG layout
        assert cog_problems(path) == []


def _structure(path: Path) -> list[dict[str, str]]:
    with rasterio.open(path) as dataset:
        levels = [dataset.tags(ns="IMAGE_STRUCTURE")]
        count = len(dataset.overviews(1))
    for level in range(count):
        with rasterio.open(path, overview_level=level) as overview:
            levels.append(overview.tags(ns="IMAGE_STRUCTURE"))
    return levels


@pytest.mark.parametrize(
    "user_co",
    [
        {},
        {"COMPRESS": "ZSTD", "LEVEL": "15"},
        {"OVERVIEW_COMPRESS": "LZW", "OVERVIEW_PREDICTOR": "NO"},
        {"PREDICTOR": "NO", "OVERVIEW_PREDICTOR": "YES"},
    ],
)
def test_a_four_band_cog_keeps_the_encoding_the_cog_driver_gives_five(
    tmp_path: Path, user_co: dict[str, str]
) -> None:
    """4 uint8 bands take the MINISBLACK re-copy; 5 do not: their encodings must not differ."""
    paths = {}
    for count in (4, 5):
        spec = make_spec(
            prompts=[(f"p{i}", f"prompt {i}") for i in range(count)], creation_options=user_co
        )
        paths[count] = tmp_path / f"{count}.cog.tif"
        write_output(paths[count], spec, _masks(count, height=100))
    assert _structure(paths[4]) == _structure(paths[5])
    with rasterio.open(paths[4]) as four, rasterio.open(paths[5]) as five:
        assert (four.block_shapes[0], four.overviews(1)) == (
            five.block_shapes[0],
            five.overviews(1),
        )
