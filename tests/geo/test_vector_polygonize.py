"""The streaming polygoniser against polygonising the whole mask at once (rasterio/GDAL)."""

import numpy as np
import pytest
import shapely
from rasterio.features import rasterize, shapes
from shapely.geometry import shape

from diffris.geo.vector.polygonize import StreamingPolygonizer


def _blobs(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random probability field and its mask (blobs of many shapes, with holes)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    prob = np.zeros((height, width))
    for _ in range(12):
        cx, cy, fx, fy = rng.uniform(0, width), rng.uniform(0, height), *rng.uniform(5, 40, 2)
        prob += np.cos((x - cx) / fx) * np.cos((y - cy) / fy)
    prob = (1 / (1 + np.exp(-prob))).astype(np.float32)
    return prob, prob >= 0.6


def _stream(mask, prob, valid, bands, *, holes=True):
    polygonizer = StreamingPolygonizer(mask.shape[1], holes=holes)
    polygons, row = [], 0
    for rows in bands:
        part = slice(row, row + rows)
        polygons += list(polygonizer.add(row, mask[part], prob[part], valid[part]))
        row += rows
    return polygons + list(polygonizer.close()), polygonizer


def _whole(mask):
    return [shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4)]


@pytest.mark.parametrize(
    ("seed", "bands"), [(0, [7] * 43), (1, [1, 50, 2, 97, 3, 150]), (2, [301])]
)
def test_banded_polygons_equal_polygonising_the_whole_mask(seed, bands):
    prob, mask = _blobs(301, 233, seed)
    valid = np.ones_like(mask)
    polygons, _ = _stream(mask, prob, valid, bands)
    whole = _whole(mask)
    assert len(polygons) == len(whole)
    key = lambda g: (g.bounds, g.area)  # noqa: E731
    for got, expected in zip(
        sorted((p.geometry for p in polygons), key=key), sorted(whole, key=key), strict=True
    ):
        assert got.is_valid and got.equals(expected)  # same region: no seam, no missing pixel
        assert len(got.interiors) == len(expected.interiors)
    again = rasterize([(p.geometry, 1) for p in polygons], out_shape=mask.shape, fill=0)
    assert np.array_equal(again.astype(bool), mask)


def test_statistics_are_those_of_the_polygons_pixels():
    prob, mask = _blobs(120, 90, 3)
    polygons, _ = _stream(mask, prob, np.ones_like(mask), [16] * 7 + [8])
    labels = rasterize([(p.geometry, i + 1) for i, p in enumerate(polygons)], out_shape=mask.shape)
    for i, polygon in enumerate(polygons):
        inside = prob[labels == i + 1].astype(np.float64)
        assert polygon.pixels == inside.size == round(polygon.geometry.area)
        assert polygon.prob_mean == pytest.approx(inside.mean(), rel=1e-9)
        assert polygon.prob_max == inside.max()


def test_one_long_object_across_many_bands_is_one_polygon_with_no_seam():
    height, width = 1000, 64
    y, x = np.mgrid[0:height, 0:width]
    centre = 32 + 20 * np.sin(y / 40)
    mask = np.abs(x - centre) < 4  # a snake from the top row to the bottom one
    prob = np.where(mask, 0.9, 0.1).astype(np.float32)
    polygons, polygonizer = _stream(mask, prob, np.ones_like(mask), [13] * 76 + [12])
    (polygon,) = polygons
    (expected,) = _whole(mask)
    assert polygon.geometry.equals(expected) and not polygon.geometry.interiors
    assert polygon.pixels == mask.sum() and polygonizer.peak_open == 1


def test_u_shape_joined_at_its_bottom_is_one_polygon():
    mask = np.zeros((40, 30), bool)
    mask[0:35, 2:6] = mask[0:35, 20:24] = mask[30:35, 2:24] = True  # two arms meet late
    prob = mask.astype(np.float32)
    polygons, polygonizer = _stream(mask, prob, np.ones_like(mask), [10] * 4)
    assert len(polygons) == 1 and polygons[0].pixels == mask.sum()
    assert polygonizer.peak_open == 2


def test_no_holes_fills_holes_of_data_but_keeps_holes_that_hold_nodata():
    mask = np.zeros((60, 60), bool)
    mask[5:55, 5:55] = True
    mask[10:20, 10:20] = False  # a hole of data pixels below the threshold
    mask[30:45, 30:45] = False  # a hole holding nodata
    valid = np.ones_like(mask)
    valid[35:40, 35:40] = False
    prob = mask.astype(np.float32)
    (kept,), _ = _stream(mask, prob, valid, [9] * 6 + [6])
    (filled,), _ = _stream(mask, prob, valid, [9] * 6 + [6], holes=False)
    assert len(kept.geometry.interiors) == 2
    assert len(filled.geometry.interiors) == 1
    assert filled.geometry.area == kept.geometry.area + 100
    nodata = shapely.box(35, 35, 40, 40)
    assert not filled.geometry.intersection(nodata).area


def test_open_polygons_follow_the_width_not_the_height():
    prob, mask = _blobs(1200, 128, 4)
    _, short = _stream(mask[:200], prob[:200], np.ones_like(mask[:200]), [20] * 10)
    _, tall = _stream(mask, prob, np.ones_like(mask), [20] * 60)
    assert tall.peak_open <= 2 * max(short.peak_open, 10)
    assert tall.open_count == 0


def test_bands_out_of_order_are_refused():
    polygonizer = StreamingPolygonizer(8)
    block = np.zeros((4, 8), bool)
    list(polygonizer.add(0, block, block.astype(np.float32), ~block))
    with pytest.raises(ValueError, match="expected row 4"):
        list(polygonizer.add(8, block, block.astype(np.float32), ~block))
