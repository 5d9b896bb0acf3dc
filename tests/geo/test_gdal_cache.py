"""GDAL's block cache bound: sizes as typed, where the size comes from, and the bound in effect
for every thread of a run."""

from __future__ import annotations

import threading

import psutil
import pytest
from rasterio.windows import Window

from diffris.errors import InputError
from diffris.geo.gdal_cache import (
    DEFAULT_GDAL_CACHE,
    bounded_gdal_cache,
    gdal_cache_size,
    parse_gdal_cache,
    resolve_gdal_cache,
)
from diffris.geo.scene import Scene
from tests.inference.scenes import position_scene

MIB = 2**20


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64M", 64 * MIB),
        ("1G", 2**30),
        ("512MiB", 512 * MIB),
        ("1.5g", 3 * 2**29),
        ("2048k", 2 * MIB),
    ],
)
def test_sizes_are_read_in_binary_units(text, expected):
    assert parse_gdal_cache(text) == expected


def test_a_share_of_the_ram_is_read_as_gdal_reads_it():
    assert parse_gdal_cache("5%") == int(psutil.virtual_memory().total * 5 / 100)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("64", "'64' has no unit"),  # GDAL would read megabytes, rasterio bytes
        ("lots", "'lots' is not a size"),
        ("-1G", "is not a size"),
        ("0M", "below 1M"),
        ("100K", "below 1M"),
        ("150%", "more than the RAM"),
    ],
)
def test_a_bad_size_is_refused_in_one_line_with_an_example(text, problem):
    with pytest.raises(InputError) as refused:
        parse_gdal_cache(text)
    message = str(refused.value)
    assert problem in message and "--gdal-cache 64M" in message.replace("5%", "64M")
    assert "\n" not in message


def test_the_option_wins_then_diffris_env_then_gdal_env_then_the_default():
    both = {"DIFFRIS_GDAL_CACHE": "32M", "GDAL_CACHEMAX": "200"}
    assert resolve_gdal_cache("16M", both) == resolve_gdal_cache("16M", {})
    assert resolve_gdal_cache("16M", both).source == "--gdal-cache"
    assert resolve_gdal_cache(None, both).size == 32 * MIB
    assert resolve_gdal_cache(None, both).source == "DIFFRIS_GDAL_CACHE"
    assert resolve_gdal_cache(None, {}).size == DEFAULT_GDAL_CACHE == 32 * MIB
    assert resolve_gdal_cache(None, {}).source == "default"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("200", 200 * MIB), ("300000000", 300_000_000), ("1%", None), ("500MB", 500 * MIB)],
)
def test_a_gdal_cachemax_in_the_environment_is_read_as_gdal_reads_it(value, expected):
    cache = resolve_gdal_cache(None, {"GDAL_CACHEMAX": value})
    assert cache.source == "GDAL_CACHEMAX"
    assert cache.size == (expected or psutil.virtual_memory().total // 100)


def test_a_bad_size_in_the_environment_names_the_variable():
    with pytest.raises(InputError, match="DIFFRIS_GDAL_CACHE 'big' is not a size"):
        resolve_gdal_cache(None, {"DIFFRIS_GDAL_CACHE": "big"})
    with pytest.raises(InputError, match="GDAL_CACHEMAX=lots in the environment is not a size"):
        resolve_gdal_cache(None, {"GDAL_CACHEMAX": "lots"})


def test_the_bound_holds_in_the_reading_thread_and_is_restored_after(tmp_path):
    """The tile reader runs on its own thread: the bound is GDAL's process-wide cache size,
    not a thread's configuration, so it holds there too; leaving the block restores it."""
    path = position_scene(tmp_path / "s.tif", 256, 256)
    before = gdal_cache_size()
    seen: list[int] = []

    def read() -> None:
        with Scene.open(path) as scene:
            scene.read(Window(0, 0, 128, 128))
            seen.append(gdal_cache_size())

    with bounded_gdal_cache(24 * MIB):
        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        assert gdal_cache_size() == 24 * MIB
    assert seen == [24 * MIB]
    assert gdal_cache_size() == before != 24 * MIB
