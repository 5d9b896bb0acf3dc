"""Write a large georeferenced synthetic scene with ground-truth masks for scene-level prompts.

The scene is planned globally but lazily: long roads and a river cross the whole scene, and each
512 px cell of a fixed grid gets its own objects from its own seed ``(seed, 1, row, col)``, kept
inside the cell. Rendering then goes window by window (block-aligned 512 px windows): a window
needs only the bands and the objects of the cells around it, so memory does not grow with the
scene, and the noise textures are functions of global pixel coordinates, so there are no seams.
A window of the scene looks like a 512 px dataset image from :func:`write_dataset`: same
vocabulary, same object sizes.

Scene prompts are category-level, as analysts use them ("the red roofs", "the ponds"): a prompt's
mask is every visible pixel of every object of its category and colour, zero in the nodata collar.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from affine import Affine

from diffris.data.synthetic.expressions import Expression, Kind, parse
from diffris.data.synthetic.geometry import Band
from diffris.data.synthetic.layout import REFERENCE_SIZE, plan_objects, plan_scene_bands
from diffris.data.synthetic.render import Shape, render
from diffris.data.synthetic.vocab import COLOURED_NOUNS, NOUNS, Category, Colour
from diffris.errors import InputError, OutputExistsError

logger = logging.getLogger(__name__)

#: The ``generator`` tag of every scene written here; tells a synthetic scene from a real one.
SYNTHETIC_GENERATOR = "diffris synthetic scene"

#: Largest planning cell and rendering window, in px (a scene side is cut into cells of about
#: this size; see :func:`cell_edges`).
CELL = REFERENCE_SIZE
#: Smallest scene side, in px.
MIN_SCENE_SIZE = 64
#: GeoTIFF tile size, in px.
TILE = 256
#: Objects keep this far (px) from their cell's border, so shadows stay inside the cell.
_EDGE = 10.0
#: GDAL block cache (MB) while building overviews.
_OVERVIEW_CACHE_MB = 128
#: uint16 scenes hold ``value * 12 + 300``: a 12-bit-like range that a viewer must stretch.
UINT16_GAIN, UINT16_OFFSET = 12, 300

#: Prompts tried in this order when none are given; those with no object in the scene are skipped.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "the red roofs",
    "the ponds",
    "the roads",
    "the blue vehicles",
    "the trees",
    "the yellow fields",
    "the rivers",
    "the white roofs",
    "the blue roofs",
    "the green fields",
    "the vehicles",
    "the buildings",
)


class SceneDtype(enum.Enum):
    """Pixel type of the scene."""

    UINT8 = "uint8"
    UINT16 = "uint16"


@dataclass(frozen=True)
class ScenePrompt:
    """A prompt of the scene and its ground truth.

    Attributes:
        id: short identifier (file stem of its mask), e.g. "red_roofs".
        text: the prompt, e.g. "the red roofs".
        expression: its parsed meaning (category and colour only).
        mask: the mask GeoTIFF (0/1 uint8, same grid as the scene), or None if not written.
        pixels: number of pixels in the mask.
    """

    id: str
    text: str
    expression: Expression
    mask: Path | None
    pixels: int


@dataclass(frozen=True)
class SceneSummary:
    """What :func:`write_scene` wrote."""

    path: Path
    height: int
    width: int
    crs: str
    transform: tuple[float, float, float, float, float, float]
    nodata_border: int
    dtype: SceneDtype
    prompts: tuple[ScenePrompt, ...]
    prompts_path: Path | None
    objects: dict[str, int]
    seconds: float


def _slug(text: str) -> str:
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    while words and words[0] in ("the", "all"):
        words = words[1:]
    return "_".join(words)[:48].strip("_") or "prompt"  # a valid prompt id: short, [a-z0-9_]


def _scene_expression(text: str) -> Expression:
    expression = parse(text)
    if expression.kind in (Kind.SIZE, Kind.POSITION, Kind.RELATION):
        raise InputError(
            f"scene prompt {text!r} uses a {expression.kind.value}; scene prompts name a category "
            "and optionally a colour, e.g. 'the red roofs'"
        )
    return expression


def _intersects(
    bounds: tuple[float, float, float, float], x0: float, y0: float, x1: float, y1: float
) -> bool:
    bx0, by0, bx1, by1 = bounds
    return bx1 >= x0 and bx0 <= x1 and by1 >= y0 and by0 <= y1


def _forget(bands: list[Shape]) -> None:
    for band in bands:
        if isinstance(band.geometry, Band):
            band.geometry.clear_cache()


def cell_edges(side: int) -> list[int]:
    """Where the planning cells along one scene side start and end, in px.

    The side is cut into ``ceil(side / CELL)`` cells of nearly equal size, with inner edges on
    the GeoTIFF tile grid, so that no cell is a sliver (a 576 px side is 256 + 320, not
    512 + 64): every cell then holds objects in proportion to its area, and a sliver too narrow
    for a field or a building cannot leave the scene's edge empty. A multiple of ``CELL`` gives
    cells of exactly ``CELL``.

    Returns:
        ``n + 1`` increasing edges from 0 to ``side``.
    """
    count = max(1, math.ceil(side / CELL))
    inner = [round(k * side / count / TILE) * TILE for k in range(1, count)]
    return [0, *inner, side]


def _check(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite to replace it")


def write_scene(
    path: str | Path,
    *,
    size: int | tuple[int, int] = 4096,
    seed: int = 0,
    crs: str = "EPSG:32633",
    pixel_size: float = 0.5,
    origin: tuple[float, float] = (500_000.0, 5_000_000.0),
    nodata_border: int = 64,
    dtype: SceneDtype | str = SceneDtype.UINT8,
    prompts: Sequence[str] | None = None,
    max_prompts: int = 6,
    prompts_out: str | Path | None = None,
    masks_out: str | Path | None = None,
    overviews: bool = True,
    overwrite: bool = False,
) -> SceneSummary:
    """Write a synthetic aerial GeoTIFF, window by window, with per-prompt ground-truth masks.

    Args:
        path: the scene GeoTIFF (3 bands RGB, tiled 256 px, DEFLATE, BigTIFF if needed).
        size: side in px, or (height, width).
        seed: the same seed writes the same pixels.
        crs: a projected CRS (anything rasterio accepts), e.g. "EPSG:32633".
        pixel_size: ground sampling distance in CRS units (m) per px.
        origin: (x, y) of the top-left corner in CRS units.
        nodata_border: width in px of a collar of nodata (0 in every band, masked).
        dtype: uint8, or uint16 (values scaled to 300..3360 so they need a stretch).
        prompts: scene prompts (category and colour only, e.g. "the red roofs"); by default the
            first ``max_prompts`` of :data:`DEFAULT_PROMPTS` present in the scene.
        max_prompts: how many default prompts to take.
        prompts_out: where to write the description file (YAML list of {id, text}), or None.
        masks_out: folder for one ``<id>.tif`` mask per prompt (0/1, the scene's grid), or None.
        overviews: build internal overviews (average) for quick previews and statistics.
        overwrite: replace existing outputs.

    Returns:
        The grid, the prompts with their mask pixel counts, objects per category.

    Raises:
        InputError: a bad size, border, CRS, pixel size, dtype or prompt.
        OutputExistsError: an output exists and ``overwrite`` is false.
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.errors import CRSError
    from rasterio.windows import Window

    started = time.perf_counter()
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(height, width) < MIN_SCENE_SIZE:
        raise InputError(
            f"scene size {height}x{width} px is too small; use at least {MIN_SCENE_SIZE} px a "
            "side, e.g. 2048"
        )
    if nodata_border < 0 or 2 * nodata_border >= min(height, width):
        raise InputError(
            f"nodata_border {nodata_border} px leaves no data in a {height}x{width} scene"
        )
    if not pixel_size > 0:
        raise InputError(f"pixel_size {pixel_size} must be positive, e.g. 0.5")
    try:
        dtype = SceneDtype(dtype)
    except ValueError as err:
        raise InputError(f"dtype {dtype!r} is not supported; use uint8 or uint16") from err
    try:
        crs_obj = CRS.from_user_input(crs)
    except CRSError as err:
        raise InputError(f"CRS {crs!r} is not recognised; use e.g. EPSG:32633") from err
    path = Path(path)
    masks_dir = Path(masks_out) if masks_out is not None else None
    prompts_path = Path(prompts_out) if prompts_out is not None else None
    _check(path, overwrite)
    if prompts_path is not None:
        _check(prompts_path, overwrite)

    bands = plan_scene_bands(np.random.default_rng([seed, 0]), height, width)
    texture_seed = int(np.random.default_rng([seed, 2]).integers(1 << 32))
    row_edges, col_edges = cell_edges(height), cell_edges(width)
    rows, cols = len(row_edges) - 1, len(col_edges) - 1
    cells: dict[tuple[int, int], list[Shape]] = {}
    for r in range(rows):
        for c in range(cols):
            x0, y0 = col_edges[c], row_edges[r]
            w, h = col_edges[c + 1] - x0, row_edges[r + 1] - y0
            near = [b for b in bands if _intersects(b.geometry.bounds(), x0, y0, x0 + w, y0 + h)]
            rng = np.random.default_rng([seed, 1, r, c])
            cells[(r, c)] = plan_objects(
                rng, x0=x0, y0=y0, width=w, height=h, scale=1.0, bands=near, edge=_EDGE
            )
            _forget(near)

    lo, hi_x, hi_y = nodata_border, width - nodata_border, height - nodata_border
    # Objects per (category, colour), counting compact ones only if centred outside the collar.
    present: dict[tuple[Category, Colour | None], int] = {}
    for shape in [s for cell in cells.values() for s in cell] + bands:
        bx0, by0, bx1, by1 = shape.geometry.bounds()
        cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
        if shape.category in (Category.ROAD, Category.RIVER) or (
            lo <= cx < hi_x and lo <= cy < hi_y
        ):
            key = (shape.category, shape.colour)
            present[key] = present.get(key, 0) + 1
    objects = {c.value: sum(n for (k, _), n in present.items() if k is c) for c in Category}

    chosen: list[tuple[str, Expression]] = []
    for text in prompts if prompts is not None else DEFAULT_PROMPTS:
        expression = _scene_expression(text)
        count = sum(n for (k, colour), n in present.items() if expression.names(k, colour))
        if prompts is None and (count == 0 or len(chosen) >= max_prompts):
            continue
        if prompts is None and count == 1 and expression.plural:
            expression = Expression(expression.category, expression.colour)
            nouns = COLOURED_NOUNS if expression.colour is not None else NOUNS
            colour = f"{expression.colour.value} " if expression.colour is not None else ""
            text = f"the {colour}{nouns[expression.category][0]}"
        if count == 0:
            logger.warning("no object in the scene matches prompt %r; its mask is empty", text)
        chosen.append((text, expression))
    ids: list[str] = []
    for text, _ in chosen:
        base = _slug(text)
        ids.append(base if base not in ids else f"{base}_{len(ids)}")
    mask_paths = [masks_dir / f"{i}.tif" for i in ids] if masks_dir is not None else []
    for mask_path in mask_paths:
        _check(mask_path, overwrite)

    transform = Affine(pixel_size, 0.0, origin[0], 0.0, -pixel_size, origin[1])  # north up
    common = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "crs": crs_obj,
        "transform": transform,
        "tiled": True,
        "blockxsize": TILE,
        "blockysize": TILE,
        "compress": "deflate",
        "predictor": 2,
        "BIGTIFF": "IF_SAFER",
    }
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    if masks_dir is not None:
        masks_dir.mkdir(parents=True, exist_ok=True)
    partial_masks = [p.with_name(p.name + ".partial") for p in mask_paths]
    pixels = [0] * len(chosen)
    with rasterio.open(
        partial, "w", count=3, dtype=dtype.value, nodata=0, photometric="RGB", **common
    ) as dst:
        dst.descriptions = ("red", "green", "blue")
        dst.update_tags(generator=SYNTHETIC_GENERATOR, seed=str(seed))
        sinks = [rasterio.open(p, "w", count=1, dtype="uint8", **common) for p in partial_masks]
        try:
            for sink, (text, _), prompt_id in zip(sinks, chosen, ids, strict=False):
                sink.set_band_description(1, text)
                sink.update_tags(prompt_id=prompt_id, text=text)
            for r in range(rows):
                for c in range(cols):
                    x0, y0 = col_edges[c], row_edges[r]
                    w, h = col_edges[c + 1] - x0, row_edges[r + 1] - y0
                    box = (x0 - 16, y0 - 16, x0 + w + 16, y0 + h + 16)
                    near = [b for b in bands if _intersects(b.geometry.bounds(), *box)]
                    shapes = near + [
                        s
                        for rr in range(max(0, r - 1), min(rows, r + 2))
                        for cc in range(max(0, c - 1), min(cols, c + 2))
                        for s in cells[(rr, cc)]
                        if _intersects(s.geometry.bounds(), *box)
                    ]
                    out = render(
                        shapes, x0=x0, y0=y0, width=w, height=h, seed=texture_seed, scale=1.0
                    )
                    _forget(near)
                    ys, xs = np.arange(y0, y0 + h)[:, None], np.arange(x0, x0 + w)[None, :]
                    valid = (ys >= lo) & (ys < hi_y) & (xs >= lo) & (xs < hi_x)
                    image = np.maximum(out.rgb, 1).astype(np.uint16)
                    if dtype is SceneDtype.UINT16:
                        image = image * UINT16_GAIN + UINT16_OFFSET
                    image[~valid] = 0
                    window = Window(x0, y0, w, h)
                    dst.write(np.moveaxis(image, -1, 0).astype(dtype.value), window=window)
                    for k, (_, expression) in enumerate(chosen):
                        lut = np.array(
                            [expression.names(s.category, s.colour) for s in shapes] + [False]
                        )
                        mask = lut[out.top] & valid
                        pixels[k] += int(mask.sum())
                        if sinks:
                            sinks[k].write(mask.astype(np.uint8)[None], window=window)
                logger.info("scene rows %d/%d written", r + 1, rows)
        finally:
            for sink in sinks:
                sink.close()
    if overviews:
        factors = [2**k for k in range(1, 12) if max(height, width) / 2**k >= TILE]
        if factors:
            # GDAL's default block cache (5% of RAM) would let the overview pass hold a large
            # share of the scene; a fixed cache keeps memory flat whatever the scene size.
            with (
                rasterio.Env(GDAL_CACHEMAX=_OVERVIEW_CACHE_MB * 2**20),  # rasterio: bytes
                rasterio.open(partial, "r+") as dst,
            ):
                dst.build_overviews(factors, Resampling.average)
    for tmp, final in [(partial, path), *zip(partial_masks, mask_paths, strict=True)]:
        os.replace(tmp, final)
    if prompts_path is not None:
        prompts_path.parent.mkdir(parents=True, exist_ok=True)
        entries = [{"id": i, "text": text} for i, (text, _) in zip(ids, chosen, strict=True)]
        prompts_path.write_text(yaml.safe_dump(entries, sort_keys=False), encoding="utf-8")
    summary = SceneSummary(
        path=path,
        height=height,
        width=width,
        crs=crs_obj.to_string(),
        transform=tuple(transform)[:6],  # type: ignore[arg-type]
        nodata_border=nodata_border,
        dtype=dtype,
        prompts=tuple(
            ScenePrompt(i, text, expr, mask_paths[k] if mask_paths else None, pixels[k])
            for k, (i, (text, expr)) in enumerate(zip(ids, chosen, strict=True))
        ),
        prompts_path=prompts_path,
        objects=objects,
        seconds=time.perf_counter() - started,
    )
    logger.info("wrote %s (%dx%d) in %.1f s", path, width, height, summary.seconds)
    return summary
