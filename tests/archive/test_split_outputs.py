"""A scene split into row parts (``archive --split-rows``) is written by the same sink as an
unsplit one: same creation profile, same pixels, data bands (no alpha), no staging left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from diffris.archive.split import PARTS_DIR
from diffris.data.prompts import Prompt
from tests.archive.archive_helpers import (
    OPTIONS,
    FieldProcessor,
    archive_whole_and_split,
    write_scene,
)
from tests.geo.band_checks import assert_bands_survive_warp, photometric_problems
from tests.geo.sink_helpers import cog_problems

#: Four prompts: the count GDAL would call RGB + alpha.
PROMPTS = tuple(Prompt(id=f"p{i}", text=text) for i, text in enumerate(["a", "b", "c", "d"]))


def _profile(path: Path) -> dict[str, object]:
    """What a GIS user sees of a file's layout (gdalinfo's structure lines, overview tags)."""
    with rasterio.open(path) as src:
        overview_levels = src.overviews(1)
        structure = src.tags(ns="IMAGE_STRUCTURE")
        profile = {
            "driver": src.driver,
            "structure": structure,
            "blocks": src.block_shapes,
            "overviews": overview_levels,
            "nodata": src.nodata,
            "tags": src.tags(),
            "band_tags": [src.tags(b) for b in src.indexes],
            "descriptions": src.descriptions,
            "georef": (src.crs, src.transform, src.shape),
        }
    if overview_levels:  # the resampling GDAL records for the overviews (gdalinfo shows it)
        with rasterio.open(path, overview_level=0) as level:
            profile["overview_structure"] = level.tags(1, ns="IMAGE_STRUCTURE")
    profile["bigtiff"] = path.read_bytes()[2:4] in (b"\x2b\x00", b"\x00\x2b")
    return profile


@pytest.mark.parametrize(
    ("fmt", "user_co"),
    [("cog", ("COMPRESS=LZW", "OVERVIEW_RESAMPLING=MODE")), ("gtiff", ("COMPRESS=LZW",))],
)
def test_a_split_output_has_the_profile_and_pixels_of_an_unsplit_one(
    tmp_path: Path, fmt: str, user_co: tuple[str, ...]
) -> None:
    write_scene(tmp_path / "in" / "tall.tif", width=200, height=300, seed=5)
    processor = FieldProcessor(model="stand-in", prompts=PROMPTS)
    options = processor.job_options(OPTIONS.replace(format=fmt, creation_options=user_co))
    whole, split = archive_whole_and_split(tmp_path, processor, options, prompts=PROMPTS)
    a, b = whole / "tall.tif", split / "tall.tif"
    assert _profile(b) == _profile(a)
    assert _profile(b)["structure"]["COMPRESSION"] == "LZW"  # the user's --co applied
    with rasterio.open(a) as one, rasterio.open(b) as other:
        assert np.array_equal(one.read(), other.read())
        for level in range(len(one.overviews(1))):
            with (
                rasterio.open(a, overview_level=level) as one_ovr,
                rasterio.open(b, overview_level=level) as other_ovr,
            ):
                assert np.array_equal(one_ovr.read(), other_ovr.read())
    if fmt == "cog":
        assert cog_problems(b) == []
        assert _profile(b)["structure"]["PREDICTOR"] == "2"
    assert photometric_problems(b) == []
    assert_bands_survive_warp(b)
    assert not (tmp_path / "split" / PARTS_DIR).exists()
