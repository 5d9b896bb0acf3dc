"""Render shapes into an RGB window with numpy, seamlessly across windows.

All randomness here is a hash of global pixel coordinates and a seed (value noise), so the same
pixel gets the same colour whichever window renders it: a large scene is drawn block by block with
no seams, and a dataset image is simply one window at the origin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from diffris.data.synthetic import vocab
from diffris.data.synthetic.geometry import Band, Geometry, RotatedRect, Sample
from diffris.data.synthetic.vocab import Category, Colour

_MASK64 = (1 << 64) - 1
_P1, _P2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)

#: Shadow offset towards +x, +y in px at scale 1 (sun in the upper left).
_SHADOW = {Category.BUILDING: 7.0, Category.TREE: 5.0, Category.VEHICLE: 2.5}
_SHADOW_FACTOR = np.float32(0.55)


@dataclass(frozen=True, eq=False)
class Shape:
    """One drawable object of a scene plan.

    Attributes:
        category: what it is (decides the painter and the paint order).
        colour: its colour word, or None for categories without one.
        geometry: where it is, in global pixel coordinates.
        tone: brightness factor of this instance (around 1).
        seed: texture seed of this instance (0 <= seed < 2**32).
    """

    category: Category
    colour: Colour | None
    geometry: Geometry
    tone: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Rendered:
    """A rendered window.

    Attributes:
        rgb: (h, w, 3) uint8.
        top: (h, w) int32; index into the shape list of the shape visible at each pixel, -1 for
            bare ground.
    """

    rgb: np.ndarray
    top: np.ndarray


def _hash(iy: np.ndarray, ix: np.ndarray, seed: int) -> np.ndarray:
    """Uniform floats in [0, 1) from integer lattice coordinates (broadcast) and a seed."""
    mix = np.uint64((seed * 0xD6E8FEB86659FD93 + 0x632BE59BD9B4E019) & _MASK64)
    h = (iy.astype(np.uint64) * _P1) ^ (ix.astype(np.uint64) * _P2) ^ mix
    h ^= h >> np.uint64(32)
    h *= _M1
    h ^= h >> np.uint64(29)
    h *= _M2
    h ^= h >> np.uint64(32)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise(ix: np.ndarray, iy: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Smooth value noise sampled at integer pixel coordinates.

    Args:
        ix: (w,) int64 global column indices.
        iy: (h,) int64 global row indices.
        cell: lattice spacing in px (feature size).
        seed: noise seed.

    Returns:
        (h, w) float32 in [0, 1).
    """
    if cell <= 1.0:
        return _hash(iy[:, None], ix[None, :], seed)
    fx = (ix + 0.5) / cell
    fy = (iy + 0.5) / cell
    gx, gy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    tx, ty = (fx - gx).astype(np.float32), (fy - gy).astype(np.float32)
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    lx = np.arange(gx.min(), gx.max() + 2)
    ly = np.arange(gy.min(), gy.max() + 2)
    lattice = _hash(ly[:, None], lx[None, :], seed)
    jx, jy = gx - lx[0], gy - ly[0]
    rows = lattice[:, jx] * (1 - tx) + lattice[:, jx + 1] * tx
    return rows[jy] * (1 - ty)[:, None] + rows[jy + 1] * ty[:, None]


def fbm(ix: np.ndarray, iy: np.ndarray, cells: tuple[float, ...], seed: int) -> np.ndarray:
    """Octaves of :func:`value_noise` with weights 1/2, 1/4, ... normalised to [0, 1)."""
    total = np.zeros((len(iy), len(ix)), dtype=np.float32)
    weight_sum = 0.0
    for k, cell in enumerate(cells):
        weight = 0.5 ** (k + 1)
        total += np.float32(weight) * value_noise(ix, iy, cell, seed + 7919 * k)
        weight_sum += weight
    return total / np.float32(weight_sum)


def _rgb(colour: tuple[int, int, int]) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32)


class _Painter(Protocol):
    def __call__(
        self, shape: Shape, smp: Sample, ix: np.ndarray, iy: np.ndarray, scale: float
    ) -> np.ndarray: ...


def _ground(ix: np.ndarray, iy: np.ndarray, seed: int, scale: float) -> np.ndarray:
    patches = fbm(ix, iy, (160 * scale, 48 * scale, 12 * scale), seed)
    mix = np.clip((patches - 0.3) / 0.4, 0.0, 1.0)[..., None]
    base = _rgb(vocab.GROUND[0]) * (1 - mix) + _rgb(vocab.GROUND[1]) * mix
    grain = value_noise(ix, iy, 2 * scale, seed + 1)[..., None]
    return base * (0.92 + 0.16 * grain)


def _field(shape: Shape, smp: Sample, ix: np.ndarray, iy: np.ndarray, scale: float) -> np.ndarray:
    assert shape.colour is not None  # the layout gives every field a colour
    dark, light = (_rgb(c) for c in vocab.FIELD[shape.colour])
    period = max(2.0, (9 + shape.seed % 6) * scale)
    stripe = (np.floor(smp.v / period) % 2)[..., None].astype(np.float32)
    colour = dark * (1 - stripe) + light * stripe
    grain = value_noise(ix, iy, 3 * scale, shape.seed)[..., None]
    colour = colour * (0.9 + 0.2 * grain) * shape.tone
    return np.where((smp.depth < 2 * scale)[..., None], colour * 0.82, colour)


def _water(shape: Shape, smp: Sample, ix: np.ndarray, iy: np.ndarray, scale: float) -> np.ndarray:
    ripple = fbm(ix, iy, (40 * scale, 10 * scale), shape.seed)[..., None]
    colour = _rgb(vocab.WATER) * (0.9 + 0.2 * ripple) * shape.tone
    return np.where((smp.depth < 3 * scale)[..., None], colour * 0.75, colour)


def _road(shape: Shape, smp: Sample, ix: np.ndarray, iy: np.ndarray, scale: float) -> np.ndarray:
    grain = value_noise(ix, iy, 1.5 * scale, shape.seed)[..., None]
    colour = _rgb(vocab.ROAD) * (0.9 + 0.16 * grain) * shape.tone
    half_width = shape.geometry.half_width if isinstance(shape.geometry, Band) else 0.0
    if half_width > 8 * scale:
        dash = 28 * scale
        centre = (np.abs(smp.v) < 1.5 * scale) & ((smp.u % dash) < dash / 2)
        edge = (smp.depth > 2.5 * scale) & (smp.depth < 4.5 * scale)
        colour = np.where((centre | edge)[..., None], _rgb(vocab.ROAD_MARKING), colour)
    return colour


def _building(
    shape: Shape, smp: Sample, ix: np.ndarray, iy: np.ndarray, scale: float
) -> np.ndarray:
    assert shape.colour is not None  # the layout gives every building a colour
    grain = value_noise(ix, iy, 2 * scale, shape.seed)[..., None]
    colour = _rgb(vocab.ROOF[shape.colour]) * shape.tone * (0.95 + 0.1 * grain)
    if shape.seed % 3:  # gabled: a lit and a shaded half, a ridge along the long axis
        shade = np.where(smp.v > 0, 1.0, 0.8).astype(np.float32)
        shade = np.where(np.abs(smp.v) < 1.2 * scale, 1.12, shade)
    else:  # flat roof with a parapet
        shade = np.where((smp.depth > 3 * scale) & (smp.depth < 4.5 * scale), 0.88, 1.0)
    colour = colour * shade[..., None].astype(np.float32)
    return np.where((smp.depth < 1.5 * scale)[..., None], colour * 0.72, colour)


def _tree(shape: Shape, smp: Sample, ix: np.ndarray, iy: np.ndarray, scale: float) -> np.ndarray:
    leaves = fbm(ix, iy, (7 * scale, 3 * scale), shape.seed)[..., None]
    dome = np.clip(smp.u, 0.0, 1.0)[..., None]  # 0 at a crown's edge, 1 at its centre
    return _rgb(vocab.TREE) * shape.tone * (0.7 + 0.6 * leaves) * (0.8 + 0.4 * dome)


def _vehicle(shape: Shape, smp: Sample, ix: np.ndarray, iy: np.ndarray, scale: float) -> np.ndarray:
    assert shape.colour is not None  # the layout gives every vehicle a colour
    colour = np.broadcast_to(_rgb(vocab.VEHICLE[shape.colour]) * shape.tone, (*smp.u.shape, 3))
    hl = shape.geometry.half_length if isinstance(shape.geometry, RotatedRect) else 1.0
    windows = ((smp.u > 0.2 * hl) & (smp.u < 0.55 * hl)) | (
        (smp.u < -0.6 * hl) & (smp.u > -0.8 * hl)
    )
    inner = smp.depth > max(1.0, 2 * scale)
    colour = np.where((windows & inner)[..., None], _rgb(vocab.WINDOW), colour)
    return np.where((smp.depth < max(1.0, scale))[..., None], colour * 0.6, colour)


_PAINTERS: dict[Category, _Painter] = {
    Category.FIELD: _field,
    Category.RIVER: _water,
    Category.POND: _water,
    Category.ROAD: _road,
    Category.BUILDING: _building,
    Category.TREE: _tree,
    Category.VEHICLE: _vehicle,
}


def paint_order(shapes: list[Shape]) -> list[int]:
    """Indices of ``shapes`` in paint order (by category z, then list order)."""
    return sorted(range(len(shapes)), key=lambda i: (vocab.Z_ORDER[shapes[i].category], i))


def render(
    shapes: list[Shape], *, x0: int, y0: int, width: int, height: int, seed: int, scale: float
) -> Rendered:
    """Render the window ``[x0, x0 + width) x [y0, y0 + height)`` (global px).

    Args:
        shapes: every shape that may touch the window (others cost only a bounds check).
        x0, y0: global pixel position of the window's top-left corner.
        width, height: window size in px.
        seed: ground texture seed (the scene's).
        scale: object scale relative to the 512 px reference (texture feature sizes follow it).

    Returns:
        The window's pixels and, per pixel, which shape is visible.
    """
    # One pixel of halo on each side so the final 3x3 smoothing is seamless across windows.
    ix = np.arange(x0 - 1, x0 + width + 1, dtype=np.int64)
    iy = np.arange(y0 - 1, y0 + height + 1, dtype=np.int64)
    xs, ys = ix + 0.5, iy + 0.5
    canvas = _ground(ix, iy, seed, scale)
    top = np.full((len(iy), len(ix)), -1, dtype=np.int32)
    for i in paint_order(shapes):
        shape = shapes[i]
        offset = _SHADOW.get(shape.category, 0.0) * scale
        bx0, by0, bx1, by1 = shape.geometry.bounds()
        c0, c1 = (
            max(0, math.floor(bx0) - int(ix[0])),
            min(len(ix), math.ceil(bx1 + offset) - int(ix[0]) + 1),
        )
        r0, r1 = (
            max(0, math.floor(by0) - int(iy[0])),
            min(len(iy), math.ceil(by1 + offset) - int(iy[0]) + 1),
        )
        if c0 >= c1 or r0 >= r1:
            continue
        sub = canvas[r0:r1, c0:c1]
        if offset:
            shadow = shape.geometry.sample(xs[c0:c1] - offset, ys[r0:r1] - offset).depth >= 0
            sub[shadow] *= _SHADOW_FACTOR
        smp = shape.geometry.sample(xs[c0:c1], ys[r0:r1])
        inside = smp.depth >= 0
        if not inside.any():
            continue
        colour = _PAINTERS[shape.category](shape, smp, ix[c0:c1], iy[r0:r1], scale)
        sub[inside] = colour[inside]
        top[r0:r1, c0:c1][inside] = i
    # [1 2 1] / 4 smoothing in y then x: soft, anti-aliased-looking edges.
    canvas = (canvas[:-2] + 2 * canvas[1:-1] + canvas[2:]) * np.float32(0.25)
    canvas = (canvas[:, :-2] + 2 * canvas[:, 1:-1] + canvas[:, 2:]) * np.float32(0.25)
    sensor = value_noise(ix[1:-1], iy[1:-1], 1.0, seed + 17)[..., None] * 6.0 - 3.0
    rgb = np.clip(np.rint(canvas + sensor), 0, 255).astype(np.uint8)
    return Rendered(rgb=rgb, top=top[1:-1, 1:-1])
