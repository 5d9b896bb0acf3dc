"""Weight windows for blending overlapping tiles.

A tile's prediction is least reliable near its edges, where the model saw the least context, so
each tile is weighted by a raised-cosine (Hann) ramp over the ``overlap`` pixels on every side
that faces a neighbouring tile, flat 1.0 in the centre. Sides on the scene border have no
neighbour to hand over to and keep full weight. The window is separable: the outer product of
one ramp per axis.

The ramp samples the half-cosine at pixel centres, ``0.5 - 0.5 cos(pi (i + 0.5) / overlap)``,
so every weight is strictly positive (normalising by the summed weights never divides by zero
inside the coverage) and a rising and a falling ramp over the same ``overlap`` pixels sum to
exactly 1 (a partition of unity for the regular grid).

The grid's snapped last row/column overlaps its neighbour by more than ``overlap``. The ramps
stay ``overlap`` long there: inside the wider overlap both tiles weigh 1 (an even average),
bracketed by the two ramps. Weights are only ever used normalised (a weighted average of
overlapping predictions), so any positive, continuous weights give a continuous result; this
keeps one window shape per border combination and the hand-over away from either tile's edge.
With ``overlap=0`` there is no blending: weights are flat, so the snapped tile's extra overlap is
an even average of the two tiles.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ramp", "weight_window"]


def ramp(length: int, overlap: int, *, start: bool, end: bool) -> np.ndarray:
    """One axis of the weight window.

    Args:
        length: tile size along the axis in pixels.
        overlap: ramp length in pixels; ``2 * overlap <= length``.
        start: the tile's start (top/left) faces a neighbour, so it ramps up from ~0.
        end: the tile's end (bottom/right) faces a neighbour, so it ramps down to ~0.

    Returns:
        (length,) float64 weights in (0, 1].
    """
    if overlap < 0 or 2 * overlap > length:
        raise ValueError(f"overlap {overlap} must be in [0, {length // 2}] for length {length}")
    weights = np.ones(length, dtype=np.float64)
    if overlap == 0:
        return weights
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
    if start:
        weights[:overlap] = rise
    if end:
        weights[length - overlap :] = rise[::-1]
    return weights


def weight_window(
    tile_h: int,
    tile_w: int,
    overlap: int,
    *,
    top: bool,
    bottom: bool,
    left: bool,
    right: bool,
) -> np.ndarray:
    """The blending weights of one tile.

    Args:
        tile_h: tile (frame) height in pixels.
        tile_w: tile (frame) width in pixels.
        overlap: ramp length in pixels at each side facing a neighbour.
        top: the tile's top side is on the scene border (no ramp there).
        bottom: the bottom side is on the scene border.
        left: the left side is on the scene border.
        right: the right side is on the scene border.

    Returns:
        (tile_h, tile_w) float32 weights, strictly positive, 1.0 in the centre.
    """
    rows = ramp(tile_h, overlap, start=not top, end=not bottom)
    cols = ramp(tile_w, overlap, start=not left, end=not right)
    return np.outer(rows, cols).astype(np.float32)
