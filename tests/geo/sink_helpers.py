"""Helpers for the sink tests: a small spec, band-wise writing, and a COG layout checker.

The checker follows the logic of GDAL's ``validate_cloud_optimized_geotiff.py`` on the raw TIFF
bytes: the ghost header declaring ``LAYOUT=IFDS_BEFORE_DATA``, every IFD tiled, all IFDs before
any image data and in ascending order, and the overviews' data before the full resolution's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from diffris.geo.sinks import OutputFormat, OutputSpec, open_sink

TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
PROMPTS = [("roads", "the highway in the north", 0.4), ("p2", "buildings near the highway")]
TAGS = {"model": "tiny", "tile": "64", "overlap": "16", "diffris_version": "0.1.0"}
#: Row bands of awkward heights: smaller than, straddling and larger than a 32-row block.
ODD_BANDS = (1, 7, 33, 5, 64, 2)


def make_spec(**changes: Any) -> OutputSpec:
    """A 150 x 100 px, two-prompt mask spec with 32 px blocks (edge blocks are partial)."""
    values: dict[str, Any] = {
        "width": 150,
        "height": 100,
        "crs": CRS.from_epsg(32633),
        "transform": TRANSFORM,
        "prompts": PROMPTS,
        "block_size": 32,
        "tags": TAGS,
    }
    values.update(changes)
    return OutputSpec(**values)


def sample_data(spec: OutputSpec, seed: int = 0) -> np.ndarray:
    """(P, H, W) values valid for ``spec``, with some nodata pixels."""
    rng = np.random.default_rng(seed)
    shape = (spec.count, spec.height, spec.width)
    prob = rng.random(shape, dtype=np.float32)
    valid = rng.random(shape[1:]) > 0.1
    return spec.encode(prob, valid)


def band_offsets(height: int, bands: Iterable[int]) -> list[tuple[int, int]]:
    """(row_off, rows) pairs covering ``height`` rows, cycling through ``bands`` heights."""
    sizes = list(bands)
    pairs, row, index = [], 0, 0
    while row < height:
        rows = min(sizes[index % len(sizes)], height - row)
        pairs.append((row, rows))
        row += rows
        index += 1
    return pairs


def write_output(
    path: Path,
    spec: OutputSpec,
    data: np.ndarray,
    *,
    bands: Iterable[int] = ODD_BANDS,
    format: OutputFormat | str | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``data`` to ``path`` in row bands of the given heights."""
    with open_sink(path, spec, format=format, overwrite=overwrite) as sink:
        for row_off, rows in band_offsets(spec.height, bands):
            sink.write_rows(row_off, data[:, row_off : row_off + rows])


@dataclass
class Ifd:
    offset: int
    tags: dict[int, list[int]]


def read_ifds(path: Path) -> tuple[bytes, int, list[Ifd]]:
    """The raw bytes, header length and IFD chain of a (Big)TIFF."""
    data = path.read_bytes()
    order = {b"II": "<", b"MM": ">"}[data[:2]]
    (magic,) = struct.unpack(order + "H", data[2:4])
    big = magic == 43
    word, count_fmt, entry_size = ("Q", "Q", 20) if big else ("I", "H", 12)
    header = 16 if big else 8
    (offset,) = struct.unpack(order + word, data[header - struct.calcsize(word) : header])
    sizes = {1: "B", 3: "H", 4: "I", 16: "Q"}
    ifds = []
    while offset:
        (count,) = struct.unpack_from(order + count_fmt, data, offset)
        base = offset + struct.calcsize(count_fmt)
        tags: dict[int, list[int]] = {}
        for i in range(count):
            entry = base + i * entry_size
            tag, kind = struct.unpack_from(order + "HH", data, entry)
            (n,) = struct.unpack_from(order + word, data, entry + 4)
            if kind not in sizes:
                continue
            fmt = order + sizes[kind] * n
            inline = struct.calcsize(fmt) <= struct.calcsize(word)
            value_at = entry + 4 + struct.calcsize(word)
            if not inline:
                (value_at,) = struct.unpack_from(order + word, data, value_at)
            tags[tag] = list(struct.unpack_from(fmt, data, value_at))
        ifds.append(Ifd(offset, tags))
        (offset,) = struct.unpack_from(order + word, data, base + count * entry_size)
    return data, header, ifds


def cog_problems(path: Path) -> list[str]:
    """Why ``path`` is not a cloud-optimised GeoTIFF (empty when it is one)."""
    data, header, ifds = read_ifds(path)
    problems = []
    ghost = data[header : header + 1024]
    if not ghost.startswith(b"GDAL_STRUCTURAL_METADATA_SIZE="):
        problems.append("no GDAL structural metadata (ghost header) after the TIFF header")
    if b"LAYOUT=IFDS_BEFORE_DATA" not in ghost:
        problems.append("ghost header does not declare LAYOUT=IFDS_BEFORE_DATA")
    offsets = [ifd.offset for ifd in ifds]
    if offsets != sorted(offsets):
        problems.append(f"IFD offsets are not ascending: {offsets}")
    if any(322 not in ifd.tags or 324 not in ifd.tags for ifd in ifds):
        problems.append("an IFD is not tiled (no TileWidth / TileOffsets)")
        return problems
    first_data = [min(o for o in ifd.tags[324] if o) for ifd in ifds]
    if max(offsets) > min(first_data):
        problems.append("image data appears before the last IFD")
    # Overview IFDs follow the main one; their data must come first, smallest overview first.
    if first_data != sorted(first_data, reverse=True):
        problems.append(f"overview data is not ordered before full-resolution data: {first_data}")
    return problems
