"""Streaming polygonisation: one prompt's mask, band by band, polygons joined across bands.

Each band of finished rows is polygonised on its own (``rasterio.features.shapes``, 4-connected,
in *pixel* coordinates: integers, so a shared band boundary has bit-identical vertices on both
sides and the union leaves no seam). The band's polygons are rasterised back to a label raster
(pixel-aligned polygons cover exactly the pixels whose centres they hold), which gives each
polygon's pixel count, probability sum and maximum in one ``bincount``.

A polygon touching the band's last row may continue in the next band: it stays *open*, with the
labels of its last-row pixels. When the next band arrives, a last-row pixel of an open polygon
above a first-row pixel of a new polygon joins the two (union-find over both sets), their
geometries are unioned and their statistics summed. A group with no pixel on the new band's last
row is finished and handed out. Memory is therefore one band's label raster plus the open
polygons, never the scene's area.

Nodata pixels are never in the mask (the caller ANDs the valid mask in), so no polygon holds one.
With ``holes=False`` a hole is filled only if it holds no nodata pixel: one representative point
of every nodata region of a band is kept while it lies in the bounding box of an open polygon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize, shapes
from shapely.geometry import Polygon, shape

__all__ = ["MaskPolygon", "StreamingPolygonizer"]


@dataclass
class MaskPolygon:
    """One connected (4-neighbour) region of a mask, in pixel coordinates of the scene.

    Attributes:
        geometry: Polygon in pixel coordinates (x = column, y = scene row).
        pixels: mask pixels inside it (its area in pixels, holes excluded).
        prob_sum: sum of the probabilities at those pixels.
        prob_max: largest probability at those pixels.
    """

    geometry: Polygon
    pixels: int
    prob_sum: float
    prob_max: float

    @property
    def prob_mean(self) -> float:
        return self.prob_sum / self.pixels


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class StreamingPolygonizer:
    """Polygonise one prompt's mask from consecutive bands of rows, top to bottom.

    Args:
        width: scene width in pixels.
        holes: keep holes (True) or fill those that hold no nodata (False).

    Feed bands with :meth:`add` (which returns the polygons finished by that band), then call
    :meth:`close` for the rest. Not thread-safe.
    """

    def __init__(self, width: int, *, holes: bool = True) -> None:
        self.width = width
        self.holes = holes
        self._open: list[MaskPolygon] = []
        # index into _open (+1) of each pixel of the last row seen; 0: not in an open polygon
        self._last = np.zeros(width, dtype=np.int64)
        self._next_row = 0
        self._points = np.empty((0, 2))  # nodata representative points (holes=False only)
        #: Largest number of polygons open at once (for tests and memory reports).
        self.peak_open = 0

    @property
    def open_count(self) -> int:
        return len(self._open)

    def add(
        self, row_off: int, mask: np.ndarray, prob: np.ndarray, valid: np.ndarray
    ) -> list[MaskPolygon]:
        """Take the next band; return the polygons it finishes.

        Args:
            row_off: scene row of the band's first row; the row after the previous band's.
            mask: (rows, width) bool, already False at nodata.
            prob: (rows, width) float probabilities (read inside the mask only).
            valid: (rows, width) bool, False at nodata (used for ``holes=False``).
        """
        if row_off != self._next_row:
            raise ValueError(f"bands must be consecutive: expected row {self._next_row}")
        rows = mask.shape[0]
        self._next_row += rows
        pieces, labels = _polygonise_band(row_off, mask, prob)
        n_new = len(pieces)
        n_open = len(self._open)
        union = _UnionFind(n_open + n_new)
        above, below = self._last, labels[0]
        touching = (above > 0) & (below > 0)
        if touching.any():
            pairs = np.unique(np.stack([above[touching], below[touching]]), axis=1)
            for a, b in pairs.T:
                union.union(int(a) - 1, n_open + int(b) - 1)
        groups: dict[int, list[int]] = {}
        for i in range(n_open + n_new):
            groups.setdefault(union.find(i), []).append(i)
        members = [*self._open, *pieces]
        last_labels = set(np.unique(labels[-1]).tolist()) - {0}
        still_open: list[MaskPolygon] = []
        finished: list[MaskPolygon] = []
        new_index = np.zeros(n_new + 1, dtype=np.int64)  # new label -> index in still_open + 1
        for group in groups.values():
            merged = _merge([members[i] for i in group])
            new_labels = [i - n_open + 1 for i in group if i >= n_open]
            if any(label in last_labels for label in new_labels):
                still_open.append(merged)
                new_index[new_labels] = len(still_open)
            else:
                finished.append(merged)
        self._open = still_open
        self._last = new_index[labels[-1]]
        self.peak_open = max(self.peak_open, len(still_open))
        if not self.holes:
            self._keep_nodata_points(row_off, valid, [*still_open, *finished])
        done = [self._finish(p) for p in finished]
        if not self.holes:
            self._keep_nodata_points(None, None, still_open)
        return done

    def close(self) -> list[MaskPolygon]:
        """Return the polygons still open (they end on the scene's last row)."""
        finished, self._open = self._open, []
        self._last[:] = 0
        return [self._finish(p) for p in finished]

    def _finish(self, polygon: MaskPolygon) -> MaskPolygon:
        if self.holes or not polygon.geometry.interiors:
            return polygon
        kept = [ring for ring in polygon.geometry.interiors if self._holds_nodata(ring)]
        polygon.geometry = Polygon(polygon.geometry.exterior, kept)
        return polygon

    def _holds_nodata(self, ring: object) -> bool:
        if not len(self._points):
            return False
        hole = Polygon(ring)  # type: ignore[arg-type]
        x0, y0, x1, y1 = hole.bounds
        near = self._points[
            (self._points[:, 0] > x0)
            & (self._points[:, 0] < x1)
            & (self._points[:, 1] > y0)
            & (self._points[:, 1] < y1)
        ]
        return bool(len(near)) and bool(shapely.contains_xy(hole, near[:, 0], near[:, 1]).any())

    def _keep_nodata_points(
        self, row_off: int | None, valid: np.ndarray | None, polygons: list[MaskPolygon]
    ) -> None:
        """Add the band's nodata points (if given) and keep those inside a polygon's bbox."""
        points = self._points
        if valid is not None and row_off is not None and not valid.all():
            nodata = ~valid
            transform = Affine.translation(0, row_off)
            regions = [
                shape(g)
                for g, _ in shapes(
                    nodata.astype(np.uint8), mask=nodata, connectivity=4, transform=transform
                )
            ]
            fresh = shapely.get_coordinates(shapely.point_on_surface(regions))
            points = np.concatenate([points, fresh])
        if not len(points) or not polygons:
            self._points = points[:0]
            return
        boxes = np.array([p.geometry.bounds for p in polygons])
        inside = (
            (points[:, None, 0] > boxes[None, :, 0])
            & (points[:, None, 0] < boxes[None, :, 2])
            & (points[:, None, 1] > boxes[None, :, 1])
            & (points[:, None, 1] < boxes[None, :, 3])
        ).any(axis=1)
        self._points = points[inside]


def _polygonise_band(
    row_off: int, mask: np.ndarray, prob: np.ndarray
) -> tuple[list[MaskPolygon], np.ndarray]:
    """The band's polygons (pixel coordinates) and its label raster (0: none, i + 1: polygon i)."""
    rows, width = mask.shape
    transform = Affine.translation(0, row_off)
    if not mask.any():
        return [], np.zeros((rows, width), dtype=np.int64)
    geoms = [
        shape(g)
        for g, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=transform)
    ]
    labels = rasterize(
        ((g, i + 1) for i, g in enumerate(geoms)),
        out_shape=(rows, width),
        transform=transform,
        fill=0,
        dtype=np.int32,
    ).astype(np.int64)
    flat = labels.ravel()
    inside = flat > 0
    values = prob.ravel()[inside].astype(np.float64)
    ids = flat[inside]
    counts = np.bincount(ids, minlength=len(geoms) + 1)
    sums = np.bincount(ids, weights=values, minlength=len(geoms) + 1)
    maxima = np.full(len(geoms) + 1, -np.inf)
    np.maximum.at(maxima, ids, values)
    pieces = [
        MaskPolygon(g, int(counts[i + 1]), float(sums[i + 1]), float(maxima[i + 1]))
        for i, g in enumerate(geoms)
    ]
    return pieces, labels


def _merge(parts: list[MaskPolygon]) -> MaskPolygon:
    if len(parts) == 1:
        return parts[0]
    geometry = shapely.union_all([p.geometry for p in parts])
    if not isinstance(geometry, Polygon):  # pragma: no cover - 4-connected parts make one polygon
        raise RuntimeError(f"joined parts made a {geometry.geom_type}, not one polygon")
    return MaskPolygon(
        geometry,
        sum(p.pixels for p in parts),
        sum(p.prob_sum for p in parts),
        max(p.prob_max for p in parts),
    )
