"""Shapes in continuous pixel coordinates, rasterised into any window.

Every geometry answers one question for a grid of pixel centres: how deep inside am I (``depth``,
in pixels, positive inside, roughly the distance to the edge), and where am I in the shape's own
frame (``u``, ``v``, in pixels, used for textures such as stripes, ridges and road markings).
Because the answer depends only on global coordinates, a shape rasterised window by window is
seamless, which is what lets a 16k scene be rendered in 512-pixel pieces.

Pixel ``(col, row)`` has its centre at ``(col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: Band segments are tested per tile of this many pixels, against the segments near that tile.
_TILE = 64
#: How far (px) beyond its half-width a band reports a meaningful depth (for clearance checks).
_REACH = 16.0
_FAR = np.float32(-1e6)

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """A geometry evaluated on a grid.

    Attributes:
        depth: (h, w) float32 px; > 0 inside, < 0 outside (distance to the edge, approximately).
        u: (h, w) float32 px along the shape's main axis (arc length for bands).
        v: (h, w) float32 px across it (signed distance from the centre line for bands).
    """

    depth: np.ndarray
    u: np.ndarray
    v: np.ndarray


class Geometry(Protocol):
    """What the renderer and the layout planner need from a shape."""

    def bounds(self) -> Bounds:
        """(x0, y0, x1, y1) in px: every pixel with depth >= 0 lies inside."""
        ...

    def sample(self, xs: np.ndarray, ys: np.ndarray) -> Sample:
        """Evaluate at pixel centres ``xs`` (w,) and ``ys`` (h,) (px, global)."""
        ...


@dataclass(frozen=True)
class RotatedRect:
    """A rectangle of ``2 * half_length`` by ``2 * half_width`` px rotated by ``angle`` radians."""

    cx: float
    cy: float
    half_length: float
    half_width: float
    angle: float

    def bounds(self) -> Bounds:
        c, s = abs(math.cos(self.angle)), abs(math.sin(self.angle))
        ex = self.half_length * c + self.half_width * s
        ey = self.half_length * s + self.half_width * c
        return (self.cx - ex, self.cy - ey, self.cx + ex, self.cy + ey)

    def sample(self, xs: np.ndarray, ys: np.ndarray) -> Sample:
        dx = (xs - self.cx).astype(np.float32)[None, :]
        dy = (ys - self.cy).astype(np.float32)[:, None]
        c, s = np.float32(math.cos(self.angle)), np.float32(math.sin(self.angle))
        u = dx * c + dy * s
        v = dy * c - dx * s
        depth = np.minimum(self.half_length - np.abs(u), self.half_width - np.abs(v))
        return Sample(depth.astype(np.float32), u, v)


@dataclass(frozen=True)
class Blob:
    """A star-shaped blob: radius ``r(θ) = radius * (1 + Σ_k a_k cos(kθ + φ_k))``, k = 2, 3, 4."""

    cx: float
    cy: float
    radius: float
    amplitudes: tuple[float, float, float]
    phases: tuple[float, float, float]

    def bounds(self) -> Bounds:
        r = self.radius * (1.0 + sum(abs(a) for a in self.amplitudes))
        return (self.cx - r, self.cy - r, self.cx + r, self.cy + r)

    def sample(self, xs: np.ndarray, ys: np.ndarray) -> Sample:
        dx = np.broadcast_to((xs - self.cx).astype(np.float32)[None, :], (len(ys), len(xs)))
        dy = np.broadcast_to((ys - self.cy).astype(np.float32)[:, None], (len(ys), len(xs)))
        dist = np.hypot(dx, dy)
        theta = np.arctan2(dy, dx)
        wobble = np.ones_like(dist)
        for k, (a, phi) in enumerate(zip(self.amplitudes, self.phases, strict=True), start=2):
            wobble += np.float32(a) * np.cos(k * theta + np.float32(phi))
        return Sample((self.radius * wobble - dist).astype(np.float32), dx, dy)


@dataclass(frozen=True)
class Circles:
    """A union of discs (a clump of tree crowns). ``u`` is the depth in the deepest disc."""

    centres: tuple[tuple[float, float], ...]
    radii: tuple[float, ...]

    def bounds(self) -> Bounds:
        return (
            min(x - r for (x, _), r in zip(self.centres, self.radii, strict=True)),
            min(y - r for (_, y), r in zip(self.centres, self.radii, strict=True)),
            max(x + r for (x, _), r in zip(self.centres, self.radii, strict=True)),
            max(y + r for (_, y), r in zip(self.centres, self.radii, strict=True)),
        )

    def sample(self, xs: np.ndarray, ys: np.ndarray) -> Sample:
        depth = np.full((len(ys), len(xs)), _FAR, dtype=np.float32)
        relative = np.zeros_like(depth)
        for (x, y), r in zip(self.centres, self.radii, strict=True):
            dx = (xs - x).astype(np.float32)[None, :]
            dy = (ys - y).astype(np.float32)[:, None]
            d = np.float32(r) - np.hypot(dx, dy)
            better = d > depth
            depth = np.where(better, d, depth)
            relative = np.where(better, d / np.float32(r), relative)
        return Sample(depth, relative, np.zeros_like(depth))


@dataclass(frozen=True, eq=False)
class Band:
    """A strip of constant width along a polyline (a road or a river).

    Attributes:
        points: ((x, y), ...) px; at least two. Extend the ends past the area you render so no
            rounded end cap shows.
        half_width: px.
    """

    points: tuple[tuple[float, float], ...]
    half_width: float

    @functools.cached_property
    def _segments(self) -> tuple[np.ndarray, ...]:
        pts = np.asarray(self.points, dtype=np.float64)
        a, b = pts[:-1], pts[1:]
        seg = b - a
        length = np.maximum(np.hypot(seg[:, 0], seg[:, 1]), 1e-9)
        start = np.concatenate([[0.0], np.cumsum(length)[:-1]])
        reach = self.half_width + _REACH
        lo = np.minimum(a, b) - reach
        hi = np.maximum(a, b) + reach
        return a, seg, length, start, lo, hi

    @property
    def length(self) -> float:
        """Total arc length in px."""
        return float(self._segments[2].sum())

    def bounds(self) -> Bounds:
        pts = np.asarray(self.points)
        hw = self.half_width
        return (
            float(pts[:, 0].min() - hw),
            float(pts[:, 1].min() - hw),
            float(pts[:, 0].max() + hw),
            float(pts[:, 1].max() + hw),
        )

    def point_at(self, s: float) -> tuple[float, float, float, float]:
        """The centre-line point at arc length ``s`` px and the unit tangent: (x, y, tx, ty)."""
        a, seg, length, start, _, _ = self._segments
        i = int(np.clip(np.searchsorted(start, s, side="right") - 1, 0, len(start) - 1))
        t = float(np.clip((s - start[i]) / length[i], 0.0, 1.0))
        x, y = a[i] + t * seg[i]
        tx, ty = seg[i] / length[i]
        return float(x), float(y), float(tx), float(ty)

    @functools.cached_property
    def _recent(self) -> dict[tuple[float, int, float, int], Sample]:
        return {}

    def sample(self, xs: np.ndarray, ys: np.ndarray) -> Sample:
        # Planning, rendering and mask extraction ask for the same window several times; bands
        # are the costly shape, so keep the last few answers (grids are always 1 px steps).
        key = (float(xs[0]), len(xs), float(ys[0]), len(ys))
        if key not in self._recent:
            if len(self._recent) >= 3:
                del self._recent[next(iter(self._recent))]
            self._recent[key] = self._sample(xs, ys)
        return self._recent[key]

    def clear_cache(self) -> None:
        """Forget remembered samples (call when moving on to another window)."""
        self._recent.clear()

    def _sample(self, xs: np.ndarray, ys: np.ndarray) -> Sample:
        a, seg, length, start, lo, hi = self._segments
        h, w = len(ys), len(xs)
        depth = np.full((h, w), _FAR, dtype=np.float32)
        along = np.zeros((h, w), dtype=np.float32)
        across = np.zeros((h, w), dtype=np.float32)
        for r0 in range(0, h, _TILE):
            ty = ys[r0 : r0 + _TILE].astype(np.float64)
            near_rows = (hi[:, 1] >= ty[0]) & (lo[:, 1] <= ty[-1])
            for c0 in range(0, w, _TILE):
                tx = xs[c0 : c0 + _TILE].astype(np.float64)
                near = np.nonzero(near_rows & (hi[:, 0] >= tx[0]) & (lo[:, 0] <= tx[-1]))[0]
                if near.size == 0:
                    continue
                best = np.full((len(ty), len(tx)), np.inf, dtype=np.float32)
                s_best = np.zeros_like(best)
                v_best = np.zeros_like(best)
                for i in near:
                    # Relative to the segment start, in float32 (|values| < a few tiles).
                    px = (tx - a[i, 0]).astype(np.float32)[None, :]
                    py = (ty - a[i, 1]).astype(np.float32)[:, None]
                    sx, sy, ln = np.float32(seg[i, 0]), np.float32(seg[i, 1]), np.float32(length[i])
                    t = np.clip((px * sx + py * sy) / (ln * ln), 0.0, 1.0)
                    dist = np.hypot(px - t * sx, py - t * sy)
                    closer = dist < best
                    best = np.where(closer, dist, best)
                    s_best = np.where(closer, np.float32(start[i]) + t * ln, s_best)
                    side = np.sign(sx * py - sy * px)
                    v_best = np.where(closer, side * dist, v_best)
                depth[r0 : r0 + _TILE, c0 : c0 + _TILE] = self.half_width - best
                along[r0 : r0 + _TILE, c0 : c0 + _TILE] = s_best
                across[r0 : r0 + _TILE, c0 : c0 + _TILE] = v_best
        return Sample(depth, along, across)
