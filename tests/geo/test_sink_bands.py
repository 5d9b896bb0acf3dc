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
