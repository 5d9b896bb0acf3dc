"""Quick-look PNG: a downsampled scene with each prompt's mask overlaid in its own colour.

Reads only decimated views (GDAL uses overviews where the file has them), so a preview of a
huge scene costs seconds and little memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import Resampling

from diffris.data.prompts import Prompt
from diffris.geo.scene import Scene

#: Distinct, colour-blind-friendly overlay colours (Okabe–Ito), cycled for many prompts.
PALETTE = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
)
ALPHA = 0.55
LEGEND_ROW = 20


def preview_shape(width: int, height: int, max_size: int) -> tuple[int, int]:
    """(rows, cols) of a preview whose long side is at most ``max_size`` px."""
    scale = min(1.0, max_size / max(width, height))
    return max(1, math.floor(height * scale)), max(1, math.floor(width * scale))


def _decimated_scene(scene: Scene, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(scene.path) as dataset:
        bands = list(scene.band_indexes)
        data = dataset.read(bands, out_shape=(3, *shape), resampling=Resampling.average)
        masks = dataset.read_masks(bands, out_shape=(3, *shape), resampling=Resampling.nearest)
    valid = masks.min(axis=0) > 0
    if scene.nodata is not None:
        valid &= ~(data == scene.nodata).any(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        valid &= ~np.isnan(data).any(axis=0)
    image = scene.stretch.apply(data)
    image[:, ~valid] = 0
    return image, valid


def _decimated_masks(
    output: Path, shape: tuple[int, int], thresholds: Sequence[float]
) -> np.ndarray:
    """(P, rows, cols) bool masks read back from a written GeoTIFF/COG or Zarr output."""
    if output.is_dir():
        import zarr

        group = zarr.open_group(output, mode="r")
        name = next(k for k, v in group.arrays() if v.ndim == 3)
        array = group[name]
        step_y = max(1, math.ceil(array.shape[1] / shape[0]))
        step_x = max(1, math.ceil(array.shape[2] / shape[1]))
        values = np.asarray(array[:, ::step_y, ::step_x])
        values = (
            np.asarray(Image.fromarray(values[0]).resize(shape[::-1], Image.Resampling.NEAREST))[
                None
            ]
            if values.shape[0] == 1
            else np.stack(
                [
                    np.asarray(Image.fromarray(v).resize(shape[::-1], Image.Resampling.NEAREST))
                    for v in values
                ]
            )
        )
        attrs = dict(array.attrs)
        scale = float(attrs.get("scale_factor", 1.0))
        nodata = attrs.get("_FillValue", array.fill_value)
    else:
        with rasterio.open(output) as dataset:
            values = dataset.read(out_shape=(dataset.count, *shape), resampling=Resampling.nearest)
            scale = float(dataset.scales[0] or 1.0)
            nodata = dataset.nodata
    valid = values != nodata if nodata is not None and not np.isnan(nodata) else ~np.isnan(values)
    if values.dtype == np.uint8 and scale == 1.0:
        return (values == 1) & valid
    probs = values.astype(np.float32) * scale
    limits = np.asarray(thresholds, dtype=np.float32)[:, None, None]
    return (probs >= limits) & valid


def write_preview(
    scene: Scene,
    output: Path,
    prompts: Sequence[Prompt],
    png: Path,
    *,
    threshold: float = 0.5,
    max_size: int = 1024,
) -> Path:
    """Write a quick-look of ``scene`` with the masks of ``output`` overlaid, and a legend.

    Args:
        scene: the input scene (its bands and stretch are reused).
        output: the GeoTIFF/COG file or Zarr store written for ``scene``.
        prompts: the prompts, in band order; their texts form the legend.
        png: where to write the PNG.
        threshold: default probability threshold when the output holds probabilities.
        max_size: long side of the preview in pixels.
    """
    shape = preview_shape(scene.width, scene.height, max_size)
    image, _ = _decimated_scene(scene, shape)
    thresholds = [p.threshold if p.threshold is not None else threshold for p in prompts]
    masks = _decimated_masks(Path(output), shape, thresholds)
    picture = image.transpose(1, 2, 0).astype(np.float32)
    for index, mask in enumerate(masks):
        colour = np.asarray(PALETTE[index % len(PALETTE)], dtype=np.float32)
        picture[mask] = (1 - ALPHA) * picture[mask] + ALPHA * colour
    canvas = Image.new("RGB", (shape[1], shape[0] + LEGEND_ROW * len(prompts) + 8), "white")
    canvas.paste(Image.fromarray(picture.clip(0, 255).astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index, prompt in enumerate(prompts):
        y = shape[0] + 4 + index * LEGEND_ROW
        draw.rectangle((6, y + 2, 20, y + 16), fill=PALETTE[index % len(PALETTE)])
        draw.text((28, y + 2), f"{prompt.id}: {prompt.text}", fill="black", font=font)
    png = Path(png)
    partial = png.with_name(f".{png.name}.partial")
    canvas.save(partial, format="PNG")
    partial.replace(png)
    return png
