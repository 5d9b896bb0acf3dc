"""Scenes and stand-in predictors for the end-to-end segmentation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

CRS_UTM = CRS.from_epsg(32633)
TRANSFORM = Affine(0.5, 0.0, 400000.0, 0.0, -0.5, 5000000.0)


def position_scene(
    path: Path, width: int, height: int, *, crs: CRS | None = CRS_UTM, nodata_border: int = 0
) -> Path:
    """An RGB uint8 GeoTIFF whose pixels encode their own position: R = x mod 256,
    G = y mod 256, B = 16 * (y // 256) + x // 256 (for scenes up to 4096 px)."""
    y, x = np.mgrid[0:height, 0:width]
    data = np.stack([x % 256, y % 256, 16 * (y // 256) + x // 256]).astype(np.uint8)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        transform=TRANSFORM,
        tiled=True,
        blockxsize=256,
        blockysize=256,
    )
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if nodata_border:
            mask = np.zeros((height, width), np.uint8)
            b = nodata_border
            mask[b:-b, b:-b] = 255
            dst.write_mask(mask)
    return path


def smooth_field(x: np.ndarray, y: np.ndarray, phase: float = 0.0) -> np.ndarray:
    """A smooth function of map position with values in (0.1, 0.9)."""
    return (0.5 + 0.4 * np.sin(x / 97.0 + phase) * np.cos(y / 131.0)).astype(np.float32)


class PositionPredictor:
    """Stand-in model: decodes each pixel's position from the position scene and returns
    ``smooth_field`` there, one phase per prompt. Counts its calls."""

    def __init__(self, prompt_count: int = 1) -> None:
        self._prompts = prompt_count
        self.calls = 0
        self.tiles_seen = 0

    @property
    def prompt_count(self) -> int:
        return self._prompts

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.tiles_seen += tiles.shape[0]
        r, g, b = (tiles[:, i].astype(np.int64) for i in range(3))
        x = r + 256 * (b % 16)
        y = g + 256 * (b // 16)
        return np.stack([smooth_field(x, y, phase=p) for p in range(self._prompts)], axis=1)
