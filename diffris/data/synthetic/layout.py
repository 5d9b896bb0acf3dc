"""Plan where things are: roads and rivers across an area, then objects placed without clashes.

Sizes are given at the 512 px reference and multiplied by ``scale`` (``size / 512`` for a dataset
image, 1 for a large scene), so a 256 px dataset image shows the same content as a 512 px one at
half the resolution, and a 512 px scene window looks like a 512 px dataset image.

Placement is rejection sampling against an occupancy map of the area: fields, ponds and buildings
never touch anything; trees may tuck partly under a roof; vehicles drive in a lane of a road or
park on free ground. Every draw comes from the caller's :class:`numpy.random.Generator`, in a
fixed order, so a plan is a pure function of the generator's state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from diffris.data.synthetic.geometry import Band, Blob, Circles, Geometry, RotatedRect
from diffris.data.synthetic.render import Shape
from diffris.data.synthetic.vocab import CATEGORY_COLOURS, Category

#: Object sizes are specified for a 512 px image.
REFERENCE_SIZE = 512
_TRIES = 40


def _shape(rng: np.random.Generator, category: Category, geometry: Geometry) -> Shape:
    colours = CATEGORY_COLOURS[category]
    colour = colours[int(rng.integers(len(colours)))] if colours else None
    tone = float(rng.uniform(0.92, 1.08))
    return Shape(category, colour, geometry, tone, int(rng.integers(1 << 32)))


class _Occupancy:
    """Which category occupies each pixel of the planned area (0 = free, else category id + 1)."""

    def __init__(self, x0: int, y0: int, width: int, height: int, edge: float) -> None:
        self.x0, self.y0, self.edge = x0, y0, edge
        self.codes = np.zeros((height, width), dtype=np.int8)

    def _region(self, geometry: Geometry, margin: float) -> tuple[slice, slice, np.ndarray] | None:
        bx0, by0, bx1, by1 = geometry.bounds()
        h, w = self.codes.shape
        c0, c1 = (
            max(0, math.floor(bx0 - margin) - self.x0),
            min(w, math.ceil(bx1 + margin) - self.x0),
        )
        r0, r1 = (
            max(0, math.floor(by0 - margin) - self.y0),
            min(h, math.ceil(by1 + margin) - self.y0),
        )
        if c0 >= c1 or r0 >= r1:
            return None
        xs = np.arange(c0, c1) + self.x0 + 0.5
        ys = np.arange(r0, r1) + self.y0 + 0.5
        return slice(r0, r1), slice(c0, c1), geometry.sample(xs, ys).depth

    def inside(self, geometry: Geometry) -> bool:
        """Whether the geometry lies within the area, ``edge`` px away from its border."""
        bx0, by0, bx1, by1 = geometry.bounds()
        h, w = self.codes.shape
        e = self.edge
        return (
            bx0 >= self.x0 + e
            and by0 >= self.y0 + e
            and bx1 <= self.x0 + w - e
            and by1 <= self.y0 + h - e
        )

    def codes_under(self, geometry: Geometry, margin: float = 0.0) -> np.ndarray:
        """(n,) int8 codes of the pixels within ``margin`` px of the geometry."""
        region = self._region(geometry, margin)
        if region is None:
            return np.zeros(0, dtype=np.int8)
        rows, cols, depth = region
        return self.codes[rows, cols][depth >= -margin]

    def is_free(self, geometry: Geometry, margin: float) -> bool:
        return self.inside(geometry) and not self.codes_under(geometry, margin).any()

    def mark(self, geometry: Geometry, category: Category) -> None:
        region = self._region(geometry, 0.0)
        if region is not None:
            rows, cols, depth = region
            self.codes[rows, cols][depth >= 0] = category.id + 1


def _uniform_point(
    rng: np.random.Generator, x0: float, y0: float, width: float, height: float, pad: float
) -> tuple[float, float]:
    """A uniform (x, y) at least ``pad`` px inside the area, or on its centre line where the area
    is narrower than ``2 * pad`` (the object then does not fit and is rejected by the caller)."""
    pad_x, pad_y = min(pad, width / 2), min(pad, height / 2)
    return (
        float(rng.uniform(x0 + pad_x, x0 + width - pad_x)),
        float(rng.uniform(y0 + pad_y, y0 + height - pad_y)),
    )


def _code(category: Category) -> int:
    return category.id + 1


def _place(
    rng: np.random.Generator,
    occupancy: _Occupancy,
    category: Category,
    make: Callable[[], Geometry],
    accept: Callable[[Geometry], bool],
) -> Shape | None:
    for _ in range(_TRIES):
        geometry = make()
        if accept(geometry):
            occupancy.mark(geometry, category)
            return _shape(rng, category, geometry)
    return None


def _bezier(a: np.ndarray, b: np.ndarray, c: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c


def _extend(points: np.ndarray, by: float) -> tuple[tuple[float, float], ...]:
    """Push both ends of a polyline outward by ``by`` px so no end cap shows in the area."""
    head = points[0] - by * _unit(points[1] - points[0])
    tail = points[-1] + by * _unit(points[-1] - points[-2])
    full = np.vstack([head, points, tail])
    return tuple((float(x), float(y)) for x, y in full)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.hypot(*v)), 1e-9)


def _edge_point(rng: np.random.Generator, side: int, width: int, height: int) -> np.ndarray:
    t = rng.uniform(0.15, 0.85)
    return np.array(
        [(t * width, 0.0), (width, t * height), (t * width, height), (0.0, t * height)][side]
    )


def _crossing(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Two points on different sides of a width x height area (usually opposite sides)."""
    side_a = int(rng.integers(4))
    turn = 2 if rng.random() < 0.7 else int(rng.choice([1, 3]))
    return _edge_point(rng, side_a, width, height), _edge_point(
        rng, (side_a + turn) % 4, width, height
    )


def _image_road(rng: np.random.Generator, size: int, scale: float) -> Band:
    a, c = _crossing(rng, size, size)
    normal = _unit(np.array([a[1] - c[1], c[0] - a[0]]))
    b = (a + c) / 2 + normal * rng.uniform(-0.2, 0.2) * size
    half_width = rng.uniform(30, 38) * scale
    return Band(_extend(_bezier(a, b, c, 24), 3 * half_width), half_width)


def _sinuous(
    rng: np.random.Generator,
    a: np.ndarray,
    c: np.ndarray,
    amplitude: float,
    waves: float,
    step: float,
) -> np.ndarray:
    length = float(np.hypot(*(c - a)))
    t = np.linspace(0.0, 1.0, max(8, int(length / step)))[:, None]
    normal = _unit(np.array([a[1] - c[1], c[0] - a[0]]))
    phase = rng.uniform(0, 2 * math.pi)
    wiggle = amplitude * np.sin(2 * math.pi * waves * t + phase) * np.sin(math.pi * t) ** 0.3
    return a + (c - a) * t + normal * wiggle


def _image_river(rng: np.random.Generator, size: int, scale: float) -> Band:
    a, c = _crossing(rng, size, size)
    half_width = rng.uniform(34, 50) * scale
    points = _sinuous(rng, a, c, rng.uniform(0.03, 0.08) * size, rng.uniform(0.5, 1.5), 12 * scale)
    return Band(_extend(points, 3 * half_width), half_width)


def plan_image_bands(rng: np.random.Generator, size: int, scale: float) -> list[Shape]:
    """Roads (0-2) and sometimes a river crossing a ``size`` x ``size`` image.

    A band that would run along an earlier one (more than a third of it on top) is dropped; a
    road crossing a river makes a bridge.
    """
    makers: list[tuple[Category, Callable[[], Band]]] = []
    if rng.random() < 0.3:
        makers.append((Category.RIVER, lambda: _image_river(rng, size, scale)))
    roads = int(rng.choice([0, 1, 1, 1, 2, 2]))
    makers += [(Category.ROAD, lambda: _image_road(rng, size, scale))] * roads
    occupancy = _Occupancy(0, 0, size, size, edge=0.0)
    shapes: list[Shape] = []
    for category, make in makers:
        band = make()
        under = occupancy.codes_under(band)
        if under.size and (under > 0).mean() > 0.33:
            continue
        occupancy.mark(band, category)
        shapes.append(_shape(rng, category, band))
    return shapes


def plan_scene_bands(rng: np.random.Generator, height: int, width: int) -> list[Shape]:
    """A loose grid of long roads and usually one river across a ``height`` x ``width`` scene."""
    shapes: list[Shape] = []
    if rng.random() < 0.8:
        a, c = _crossing(rng, width, height)
        half_width = rng.uniform(38, 54)
        wiggle = _sinuous(rng, a, c, rng.uniform(80, 260), np.hypot(*(c - a)) / 1800.0, 12.0)
        shapes.append(_shape(rng, Category.RIVER, Band(_extend(wiggle, 200.0), half_width)))
    for horizontal in (True, False):
        span, across = (width, height) if horizontal else (height, width)
        count = max(1, round(across / 1100))
        for k in range(count):
            offset = (k + rng.uniform(0.3, 0.7)) * across / count
            t = np.arange(-200.0, span + 200.0, 64.0)
            drift = rng.uniform(20, 120) * np.sin(
                2 * math.pi * t / rng.uniform(1500, 4000) + rng.uniform(0, 6.3)
            )
            line = (
                np.stack([t, offset + drift], axis=1)
                if horizontal
                else np.stack([offset + drift, t], axis=1)
            )
            half_width = rng.uniform(30, 38)
            shapes.append(_shape(rng, Category.ROAD, Band(_extend(line, 0.0), half_width)))
    return shapes


def plan_objects(
    rng: np.random.Generator,
    *,
    x0: int,
    y0: int,
    width: int,
    height: int,
    scale: float,
    bands: list[Shape],
    edge: float,
) -> list[Shape]:
    """Place fields, ponds, buildings, trees and vehicles in one area, avoiding ``bands``.

    Args:
        rng: the generator every draw comes from.
        x0, y0, width, height: the area in global px; objects stay inside it.
        scale: object scale relative to the 512 px reference.
        bands: roads and rivers already crossing the area (vehicles use the roads).
        edge: distance in px every object keeps from the area's border.

    Returns:
        The placed objects (bands not included).
    """
    occupancy = _Occupancy(x0, y0, width, height, edge)
    for band in bands:
        occupancy.mark(band.geometry, band.category)
    area = width * height / (REFERENCE_SIZE * scale) ** 2

    def count(lo: float, hi: float) -> int:
        return int(rng.integers(round(lo * area), round(hi * area) + 1))

    def point(pad: float) -> tuple[float, float]:
        return _uniform_point(rng, x0, y0, width, height, pad)

    base_angle = rng.uniform(0, math.pi / 2)
    objects: list[Shape] = []

    def add(
        category: Category, n: int, make: Callable[[], Geometry], accept: Callable[[Geometry], bool]
    ) -> None:
        for _ in range(n):
            shape = _place(rng, occupancy, category, make, accept)
            if shape is not None:
                objects.append(shape)

    def field() -> Geometry:
        hl, hw = rng.uniform(70, 130) * scale, rng.uniform(50, 100) * scale
        return RotatedRect(*point(hw), hl, hw, base_angle + rng.normal(0, 0.1))

    def pond() -> Geometry:
        amplitudes = tuple(float(a) for a in rng.uniform(-0.15, 0.15, 3))
        phases = tuple(float(p) for p in rng.uniform(0, 2 * math.pi, 3))
        return Blob(*point(40 * scale), rng.uniform(36, 80) * scale, amplitudes, phases)  # type: ignore[arg-type]

    def building() -> Geometry:
        hl = rng.uniform(28, 60) * scale
        hw = rng.uniform(22, min(hl / scale, 45)) * scale
        turn = math.pi / 2 if rng.random() < 0.3 else 0.0
        return RotatedRect(*point(hw), hl, hw, base_angle + turn + rng.normal(0, 0.08))

    def tree() -> Geometry:
        cx, cy = point(30 * scale)
        n = int(rng.integers(3, 7))
        radius, angle = rng.uniform(0, 18, n) * scale, rng.uniform(0, 2 * math.pi, n)
        centres = tuple(
            (float(cx + r * math.cos(a)), float(cy + r * math.sin(a)))
            for r, a in zip(radius, angle, strict=True)
        )
        return Circles(centres, tuple(float(r) for r in rng.uniform(12, 22, n) * scale))

    def tree_fits(geometry: Geometry) -> bool:
        if not occupancy.inside(geometry):
            return False
        under = occupancy.codes_under(geometry, 2 * scale)
        allowed = (under == 0) | (under == _code(Category.BUILDING))
        return bool(allowed.all()) and (under == _code(Category.BUILDING)).mean() < 0.25

    add(Category.FIELD, count(0, 2), field, lambda g: occupancy.is_free(g, 6 * scale))
    add(Category.POND, count(0, 2), pond, lambda g: occupancy.is_free(g, 6 * scale))
    add(Category.BUILDING, count(2, 7), building, lambda g: occupancy.is_free(g, 8 * scale))
    add(Category.TREE, count(1, 6), tree, tree_fits)
    objects += _vehicles(rng, occupancy, bands, count(0, 5), scale)
    return objects


def _vehicles(
    rng: np.random.Generator, occupancy: _Occupancy, bands: list[Shape], n: int, scale: float
) -> list[Shape]:
    """Vehicles in a lane of a road (when a road crosses the area) or parked on free ground."""
    roads = [band.geometry for band in bands if band.category is Category.ROAD]
    h, w = occupancy.codes.shape
    x0, y0, edge = occupancy.x0, occupancy.y0, occupancy.edge
    stops: list[tuple[Band, float]] = []  # (road, arc length of a centre-line vertex in the area)
    for road in roads:
        if not isinstance(road, Band):
            continue
        pts = np.asarray(road.points)
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
        pad = edge + 40 * scale
        keep = (
            (pts[:, 0] > x0 + pad)
            & (pts[:, 0] < x0 + w - pad)
            & (pts[:, 1] > y0 + pad)
            & (pts[:, 1] < y0 + h - pad)
        )
        stops += [(road, float(s)) for s in arc[keep]]

    def on_road() -> Geometry:
        road, s = stops[int(rng.integers(len(stops)))]
        x, y, tx, ty = road.point_at(s + rng.uniform(-8, 8) * scale)
        lane = 1.0 if rng.random() < 0.5 else -1.0
        offset = lane * road.half_width * rng.uniform(0.42, 0.5)
        angle = math.atan2(ty, tx) + (0.0 if lane > 0 else math.pi)
        return RotatedRect(
            x - ty * offset,
            y + tx * offset,
            rng.uniform(25, 30) * scale,
            rng.uniform(12, 14) * scale,
            angle,
        )

    def parked() -> Geometry:
        cx, cy = _uniform_point(rng, x0, y0, w, h, 30 * scale)
        return RotatedRect(
            cx,
            cy,
            rng.uniform(25, 30) * scale,
            rng.uniform(12, 14) * scale,
            rng.uniform(0, math.pi),
        )

    def on_road_fits(geometry: Geometry) -> bool:
        if not occupancy.inside(geometry):
            return False
        if (occupancy.codes_under(geometry, 4 * scale) == _code(Category.VEHICLE)).any():
            return False
        under = occupancy.codes_under(geometry)
        return bool(under.size) and (under == _code(Category.ROAD)).mean() > 0.97

    shapes: list[Shape] = []
    for _ in range(n):
        driving = bool(stops) and rng.random() < 0.75
        make, accept = (
            (on_road, on_road_fits)
            if driving
            else (parked, lambda g: occupancy.is_free(g, 4 * scale))
        )
        shape = _place(rng, occupancy, Category.VEHICLE, make, accept)
        if shape is not None:
            shapes.append(shape)
    return shapes
