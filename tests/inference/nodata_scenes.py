"""Scenes whose nodata is given each way GDAL knows, for the nodata-skipping tests.

The same pixels and the same valid pixels are written as a nodata value (dense or with sparse,
absent blocks), an internal mask band, an external ``.msk`` mask, an alpha band, or with no
nodata at all, so a test can check that each kind gives the same result.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from tests.inference.scenes import CRS_UTM, TRANSFORM

#: ``rows(row0, count)`` -> ((3, count, width) uint8 data, (count, width) bool valid).
RowSource = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


class NodataKind(enum.Enum):
    """How a scene says which pixels are nodata."""

    VALUE = "nodata-value"
    SPARSE = "nodata-value-sparse"
    INTERNAL_MASK = "internal-mask"
    EXTERNAL_MASK = "external-mask"
    ALPHA = "alpha"
    NONE = "none"


def write_scene(
    path: Path,
    width: int,
    height: int,
    rows: RowSource,
    kind: NodataKind,
    *,
    block: int = 256,
    chunk_rows: int = 1024,
) -> Path:
    """Write a tiled, deflated RGB GeoTIFF band of rows by band of rows.

    Args:
        path: the file (an external mask goes to ``path.msk``).
        width: scene width in px.
        height: scene height in px.
        rows: the pixels and which of them are valid, for a band of rows.
        kind: how nodata is recorded. Nodata pixels are written as 0 in every band (as
            gdalwarp leaves them); for the value kinds, a valid pixel that is 0 in every band
            is written as 1 in red (0 is the nodata value). ``NONE`` ignores ``valid``.
        block: the GeoTIFF's block side in px.
        chunk_rows: rows written at a time (bounds memory for large scenes).
    """
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 4 if kind is NodataKind.ALPHA else 3,
        "dtype": "uint8",
        "crs": CRS_UTM,
        "transform": TRANSFORM,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "photometric": "RGB",
    }
    if kind in (NodataKind.VALUE, NodataKind.SPARSE):
        profile["nodata"] = 0
    if kind is NodataKind.SPARSE:
        profile["sparse_ok"] = True
    if kind is NodataKind.ALPHA:
        profile["alpha"] = "YES"
    internal = kind is not NodataKind.EXTERNAL_MASK
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=internal),
        rasterio.open(path, "w", **profile) as dst,
    ):
        if kind is NodataKind.ALPHA:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue] + [
                ColorInterp.alpha
            ]
        for row0 in range(0, height, chunk_rows):
            count = min(chunk_rows, height - row0)
            data, valid = rows(row0, count)
            window = Window(0, row0, width, count)
            if kind is not NodataKind.NONE:
                data = np.where(valid, data, 0).astype(np.uint8)
            if kind in (NodataKind.VALUE, NodataKind.SPARSE):
                data[0][valid & (data.max(axis=0) == 0)] = 1
            dst.write(data, [1, 2, 3], window=window)
            if kind is NodataKind.ALPHA:
                dst.write(np.where(valid, 255, 0).astype(np.uint8), 4, window=window)
            elif kind in (NodataKind.INTERNAL_MASK, NodataKind.EXTERNAL_MASK):
                dst.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)
    return path


def from_arrays(data: np.ndarray, valid: np.ndarray) -> RowSource:
    """A :data:`RowSource` over whole-scene arrays: (3, h, w) uint8 and (h, w) bool."""
    return lambda row0, count: (data[:, row0 : row0 + count], valid[row0 : row0 + count])


def sparse_valid(width: int, height: int) -> np.ndarray:
    """(h, w) bool: a block of data, lone valid pixels and one-pixel lines, else nodata.

    The lone pixels sit on scene corners, block and cell edges, and alone inside tiles, where
    a decimated mask would miss them.
    """
    valid = np.zeros((height, width), bool)
    valid[100:300, 600 : min(width, 800)] = True
    for row, col in [
        (0, width - 1),
        (height - 1, 0),
        (height - 1, width - 1),
        (450, 450),
        (511, 511),
        (512, 31),
        (31, 32),
        (height - 130, 130),
    ]:
        valid[row, col] = True
    valid[700, 200 : width - 60] = True  # a thin horizontal line
    valid[500:520, 5] = True  # a short vertical one
    return valid


def random_pixels(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(3, h, w) uint8 noise."""
    return np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8)
