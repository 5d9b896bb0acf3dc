"""Helpers that write small real rasters for the geo tests (imported as ``rasters``).

Kept out of ``conftest.py`` so the geo test files can share it without clashing with other
fixtures in this folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

#: A projected CRS (UTM 33N) with a 10 m grid, as a Sentinel-2 scene would have.
CRS = "EPSG:32633"
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = CRS,
    nodata: float | None = None,
    colorinterp: Sequence[ColorInterp] | None = None,
    mask: np.ndarray | None = None,
    overviews: Sequence[int] = (),
) -> Path:
    """Write a tiled GeoTIFF.

    Args:
        path: output file.
        data: (bands, h, w) or (h, w) array; its dtype is the file's.
        crs: CRS, or None for a file without one (the transform is kept).
        nodata: the file's nodata value.
        colorinterp: per-band colour interpretation.
        mask: (h, w) bool, True = valid; written as an internal GDAL mask band.
        overviews: overview factors to build (average resampling).
    """
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": str(data.dtype),
        "transform": TRANSFORM,
        "tiled": width >= 256 and height >= 256,
        "compress": "deflate",
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if colorinterp is not None and list(colorinterp)[:3] == [
        ColorInterp.red,
        ColorInterp.green,
        ColorInterp.blue,
    ]:
        profile["photometric"] = "RGB"
    if colorinterp is not None and ColorInterp.alpha in colorinterp:
        profile["alpha"] = "YES"  # GTiff records alpha only as an ExtraSamples creation option
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if colorinterp is not None:
            ds.colorinterp = list(colorinterp)
        if mask is not None:
            ds.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    if overviews:
        from rasterio.enums import Resampling

        with rasterio.open(path, "r+") as ds:
            ds.build_overviews(list(overviews), Resampling.average)
    return path


def smooth_field(rows: np.ndarray, cols: np.ndarray, phase: float = 0.0) -> np.ndarray:
    """A smooth probability field of map position, values in (0.1, 0.9).

    Args:
        rows: scene row coordinates (broadcastable with ``cols``).
        cols: scene column coordinates.
        phase: shifts the field so several prompts get different maps.
    """
    return 0.5 + 0.4 * np.sin(cols / 97.0 + phase) * np.cos(rows / 131.0 - phase)
