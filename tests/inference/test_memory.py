"""The memory estimate of a run (the dry run's figure) and the preflight that refuses one too
big for the machine."""

from __future__ import annotations

import pytest
import rasterio

from diffris.errors import InputError
from diffris.geo.gdal_cache import bounded_gdal_cache
from diffris.inference.memory import (
    NotEnoughMemoryError,
    check_memory,
    estimate_memory,
    gdal_cache_bytes,
    parse_size,
)
from diffris.inference.run import plan_scene
from diffris.inference.segment import SegmentOptions
from tests.inference.scenes import position_scene


@pytest.mark.parametrize("size", [16 * 2**20, 99_999 * 2**20, 200_000_000])
def test_the_estimate_counts_the_cache_gdal_holds_now(size):
    """rasterio sets ``GDAL_CACHEMAX`` in bytes (``rasterio.Env(GDAL_CACHEMAX=64)`` is 64
    bytes), and the estimate reads the size GDAL holds, not a setting's text."""
    with rasterio.Env(GDAL_CACHEMAX=size):
        assert gdal_cache_bytes() == size


def test_the_dry_run_estimate_includes_gdal_cache(tmp_path):
    scene = position_scene(tmp_path / "s.tif", 256, 256)
    options = SegmentOptions(tile=256)
    with bounded_gdal_cache(64 * 2**20):
        small = plan_scene(scene, tmp_path / "o.tif", 2, options)
    with bounded_gdal_cache(1088 * 2**20):
        large = plan_scene(scene, tmp_path / "o.tif", 2, options)
    assert (small.gdal_cache_mib, large.gdal_cache_mib) == (64, 1088)
    assert large.estimated_memory_mib - small.estimated_memory_mib == pytest.approx(1024, abs=0.2)


def test_10000_prompts_on_a_256_px_scene_is_about_18_gib_without_the_cache():
    estimate = estimate_memory(
        width=256, height=256, tiles=1, prompts=10_000, tile=512, batch_size=4, output_itemsize=1
    )
    without_cache = (estimate.total - estimate.gdal_cache) / 2**30
    assert 17 < without_cache < 18.5  # a batch never holds more tiles than the scene has
    assert estimate.batch_output == 10_000 * 512 * 512 * 4


def test_a_run_over_the_budget_is_refused_with_the_numbers_and_the_fixes():
    with pytest.raises(NotEnoughMemoryError) as refused:
        check_memory(30 * 2**30, scene="s.tif", prompts=10_000, batch_size=4, budget=8 * 2**30)
    message = str(refused.value)
    assert "s.tif with 10000 prompt(s) needs about 30.0 GiB" in message
    assert "8.0 GiB is allowed by --max-memory" in message
    assert "fewer prompts per run" in message and "--batch-size" in message
    check_memory(7 * 2**30, scene="s.tif", prompts=10_000, batch_size=4, budget=8 * 2**30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("48G", 48 * 2**30), ("512MiB", 512 * 2**20), ("1.5g", 3 * 2**29), ("4096", 4096)],
)
def test_sizes_parse_in_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "12 parsecs"])
def test_a_bad_size_is_an_input_error(text):
    with pytest.raises(InputError, match="is not a size"):
        parse_size(text)
