"""Quick-look PNG: a downsampled scene with each prompt's mask overlaid, outlined, and a legend.

Reads only decimated views (GDAL uses overviews where the file has them), so a preview of a
huge scene costs seconds and little memory. A Zarr output is read back through xarray's
decoding (``_FillValue`` as missing, ``scale_factor``), as any xarray user reads it.

A preview must never hide a mask: each prompt gets the palette colour that stands out most
from the scene under its mask (a "roads" mask over blue sea is not painted blue) and from the
other prompts' colours; its area is tinted with that colour and outlined in it at full
strength, and its legend entry shows the same colour with the share of the scene the mask
covers (so an empty mask says 0 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from rasterio.enums import Resampling

from diffris.data.prompts import Prompt
from diffris.geo.scene import Scene
from diffris.geo.sinks.publish import publish, remove_path, reserve_partial

__all__ = ["PALETTE", "Overlay", "overlay_masks", "preview_shape", "swatch_box", "write_preview"]

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
#: Weight of the mask colour in the tint of a mask's area (its outline is at full strength).
ALPHA = 0.45
LEGEND_ROW = 20
_LEGEND_PAD = 8
#: Scene pixels sampled to choose a prompt's colour; enough for a stable percentile.
_COLOUR_SAMPLES = 4096
#: CIE76 ΔE from the scene that is plenty (2.3 is just noticeable); past it, a colour unlike the
#: other prompts' matters more.
_ENOUGH_CONTRAST = 50.0


@dataclass(frozen=True)
class Overlay:
    """A scene quick-look with masks painted on it.

    Attributes:
        image: (rows, cols, 3) uint8 RGB.
        colours: the RGB colour of each prompt's tint, outline and legend swatch.
        coverage: the fraction of the scene's valid pixels inside each mask, in [0, 1].
    """

    image: np.ndarray
    colours: list[tuple[int, int, int]]
    coverage: list[float]


def preview_shape(width: int, height: int, max_size: int) -> tuple[int, int]:
    """(rows, cols) of a preview whose long side is at most ``max_size`` px."""
    scale = min(1.0, max_size / max(width, height))
    return max(1, math.floor(height * scale)), max(1, math.floor(width * scale))


def swatch_box(index: int, map_rows: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), inclusive, of prompt ``index``'s legend swatch under a map of
    ``map_rows`` rows."""
    y = map_rows + 4 + index * LEGEND_ROW
    return 6, y + 2, 20, y + 16


def overlay_masks(scene_rgb: np.ndarray, valid: np.ndarray, masks: np.ndarray) -> Overlay:
    """Paint masks over a scene so that each stays visible, whatever the scene's colours.

    Args:
        scene_rgb: (rows, cols, 3) uint8 scene.
        valid: (rows, cols) bool, the scene's valid (not nodata) pixels.
        masks: (P, rows, cols) bool, one mask per prompt.
    """
    picture = scene_rgb.astype(np.float32)
    lab = _lab(scene_rgb)
    colours: list[tuple[int, int, int]] = []
    for mask in masks:
        colour = _contrasting_colour(lab[mask] if mask.any() else lab[valid], colours)
        colours.append(colour)
        picture[mask] = (1 - ALPHA) * picture[mask] + ALPHA * np.asarray(colour, np.float32)
    for mask, colour in zip(masks, colours, strict=True):  # outlines last: none is covered
        picture[_outline(mask)] = colour
    valid_count = max(int(valid.sum()), 1)
    coverage = [float((mask & valid).sum()) / valid_count for mask in masks]
    image = np.rint(picture).clip(0, 255).astype(np.uint8)
    return Overlay(image=image, colours=colours, coverage=coverage)


def write_preview(
    scene: Scene,
    output: Path,
    prompts: Sequence[Prompt],
    png: Path,
    *,
    threshold: float = 0.5,
    max_size: int = 1024,
    overwrite: bool = False,
) -> Path:
    """Write a quick-look of ``scene`` with the masks of ``output`` overlaid, and a legend.

    The PNG is written under a temporary name and renamed into place, like every output.

    Args:
        scene: the input scene (its bands and stretch are reused).
        output: the GeoTIFF/COG file or Zarr store written for ``scene``.
        prompts: the prompts, in band order; their texts form the legend.
        png: where to write the PNG.
        threshold: default probability threshold when the output holds probabilities.
        max_size: long side of the preview in pixels.
        overwrite: replace an existing ``png``.

    Raises:
        OutputExistsError: ``png`` exists and ``overwrite`` is False.
    """
    shape = preview_shape(scene.width, scene.height, max_size)
    image, valid = _decimated_scene(scene, shape)
    thresholds = [p.threshold if p.threshold is not None else threshold for p in prompts]
    masks = _decimated_masks(Path(output), shape, thresholds) & valid
    overlay = overlay_masks(image.transpose(1, 2, 0), valid, masks)
    canvas = _with_legend(overlay, prompts)
    png = Path(png)
    partial = reserve_partial(png)
    try:
        canvas.save(partial, format="PNG")
        publish(partial, png, overwrite=overwrite)
    finally:
        remove_path(partial)
    return png


def _with_legend(overlay: Overlay, prompts: Sequence[Prompt]) -> Image.Image:
    rows, cols = overlay.image.shape[:2]
    font = ImageFont.load_default()
    labels = [
        f"{p.id}: {p.text} ({100 * share:.1f} % of the scene)"
        for p, share in zip(prompts, overlay.coverage, strict=True)
    ]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max((measure.textlength(label, font=font) for label in labels), default=0)
    width = max(cols, 28 + math.ceil(text_width) + _LEGEND_PAD)
    canvas = Image.new("RGB", (width, rows + LEGEND_ROW * len(prompts) + _LEGEND_PAD), "white")
    canvas.paste(Image.fromarray(overlay.image), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, (label, colour) in enumerate(zip(labels, overlay.colours, strict=True)):
        x0, y0, x1, y1 = swatch_box(index, rows)
        draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline="black")
        draw.rectangle((x0, y0, x1, y1), fill=colour)
        draw.text((28, y0), label, fill="black", font=font)
    return canvas


def _contrasting_colour(
    scene_lab: np.ndarray, taken: Sequence[tuple[int, int, int]]
) -> tuple[int, int, int]:
    """The palette colour that stands out most both from these scene pixels and from the
    colours ``taken`` by other prompts; ties go to palette order.

    Contrast with the scene is the 10th percentile of CIE76 ΔE over the pixels (so most of the
    mask stands out, not only its average), counted up to ``_ENOUGH_CONTRAST``.
    """
    free = [c for c in PALETTE if c not in taken] or list(PALETTE)
    palette_lab = _lab(np.asarray(free, dtype=np.uint8)[None])[0]
    score = np.full(len(free), _ENOUGH_CONTRAST)
    if len(scene_lab):
        sample = scene_lab[:: max(1, len(scene_lab) // _COLOUR_SAMPLES)]
        distance = np.linalg.norm(sample[None, :, :] - palette_lab[:, None, :], axis=2)
        score = np.minimum(score, np.percentile(distance, 10, axis=1))
    if taken:
        taken_lab = _lab(np.asarray(taken, dtype=np.uint8)[None])[0]
        apart = np.linalg.norm(palette_lab[:, None, :] - taken_lab[None, :, :], axis=2)
        score = np.minimum(score, apart.min(axis=1))
    return free[int(np.argmax(score))]


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` on its border, 2 px wide (3 px on previews over 512 px)."""
    if not mask.any():
        return mask
    size = 7 if max(mask.shape) > 512 else 5
    eroded = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(size))
    interior = np.asarray(eroded) > 0
    return mask & ~interior


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of (..., 3) uint8 sRGB."""
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array(
        [[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]]
    )
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


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
        values, is_mask = _zarr_values(output, shape)
    else:
        with rasterio.open(output) as dataset:
            raw = dataset.read(out_shape=(dataset.count, *shape), resampling=Resampling.nearest)
            scale = float(dataset.scales[0] or 1.0)
            is_mask = raw.dtype == np.uint8 and scale == 1.0
            values = raw.astype(np.float32) * scale
            if dataset.nodata is not None:
                values[raw == dataset.nodata] = np.nan
    if is_mask:
        return values == 1
    limits = np.asarray(thresholds, dtype=np.float32)[:, None, None]
    with np.errstate(invalid="ignore"):  # NaN (nodata) compares False: outside every mask
        return values >= limits


def _zarr_values(store: Path, shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """(P, rows, cols) float values decoded by xarray (nodata as NaN) at the preview's pixel
    centres, and whether they are masks (else probabilities)."""
    import xarray as xr

    with xr.open_zarr(store, chunks=None) as ds:
        name = ds.attrs.get("output_type")
        if name not in ds.data_vars:
            name = next(n for n, v in ds.data_vars.items() if v.ndim == 3)
        array = ds[name]
        height, width = array.shape[1:]
        rows = ((np.arange(shape[0]) + 0.5) * height / shape[0]).astype(np.int64)
        cols = ((np.arange(shape[1]) + 0.5) * width / shape[1]).astype(np.int64)
        values = array.isel({array.dims[1]: rows, array.dims[2]: cols}).values
        return values.astype(np.float32), name == "mask"
