"""Polygons end to end through segment_scene: real scenes, real files, checked against the raster
written in the same run and against polygonising that raster in one call."""

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.features import rasterize, shapes
from shapely.geometry import shape

from diffris.data.prompts import Prompt
from diffris.errors import InputError
from diffris.geo.sinks.spec import OutputDtype, OutputType
from diffris.geo.vector import VectorOptions
from diffris.inference.segment import SegmentOptions, VectorTarget, segment_scene
from tests.inference.scenes import CRS_UTM, TRANSFORM, PositionPredictor, position_scene

PROMPTS = [
    Prompt(id="a", text="the first thing"),
    Prompt(id="b", text="the second thing", threshold=0.7),
]


class SnakePredictor:
    """Stand-in model: one thin winding object from the scene's top row to its bottom one."""

    prompt_count = 1

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        r, g, b = (tiles[:, i].astype(np.int64) for i in range(3))
        x, y = r + 256 * (b % 16), g + 256 * (b // 16)
        inside = np.abs(x - (150 + 60 * np.sin(y / 45.0))) < 6
        return np.where(inside, 0.9, 0.2).astype(np.float32)[:, None]


def _layers(path) -> dict[str, gpd.GeoDataFrame]:
    return {name: gpd.read_file(path, layer=name) for name, _ in pyogrio.list_layers(path)}


def test_polygons_rasterised_equal_the_mask_written_in_the_same_run(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 700, 600, nodata_border=40)
    masks, polygons = tmp_path / "masks.tif", tmp_path / "polygons.gpkg"
    result = segment_scene(
        scene,
        masks,
        PositionPredictor(2),
        PROMPTS,
        SegmentOptions(tile=128, overlap=32),
        model_id="stand-in",
        vector=VectorTarget(polygons),
    )
    layers = _layers(polygons)
    assert list(layers) == ["a", "b"] and result.polygons == sum(map(len, layers.values()))
    with rasterio.open(masks) as written:
        raster = written.read()
        nodata = written.read_masks(1) == 0
    for band, frame in enumerate(layers.values()):
        assert frame.crs == CRS_UTM and frame.geometry.is_valid.all()
        again = rasterize(
            ((g, 1) for g in frame.geometry), out_shape=raster.shape[1:], transform=TRANSFORM
        )
        assert np.array_equal(again, raster[band] == 1)  # identical, nodata never inside
        assert not again[nodata].any()
        # joined across tiles and bands: as many polygons as polygonising the mask in one call
        whole = [shape(g) for g, _ in shapes(raster[band], mask=raster[band] == 1, connectivity=4)]
        assert len(frame) == len(whole) and frame.geometry.area.sum() == pytest.approx(
            sum(g.area for g in whole) * 0.25
        )


def test_one_long_object_across_tiles_and_bands_is_one_polygon(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 300, 900)
    polygons = tmp_path / "snake.parquet"
    result = segment_scene(
        scene,
        None,
        SnakePredictor(),
        PROMPTS[:1],
        SegmentOptions(tile=128, overlap=32),
        model_id="stand-in",
        vector=VectorTarget(polygons),
    )
    frame = gpd.read_parquet(polygons)
    (snake,) = frame.geometry  # ~8 grid rows and bands: one polygon, no seam, no hole
    assert snake.is_valid and not snake.interiors and result.output == str(polygons)
    minx, miny, maxx, maxy = snake.bounds
    assert (maxy - miny) == 900 * 0.5  # from the first row to the last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif", "snake.parquet"]


def test_attributes_equal_a_hand_computation_from_the_probabilities(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 400, 300)
    probs, polygons = tmp_path / "probs.tif", tmp_path / "polygons.geojson"
    options = SegmentOptions(
        tile=128, overlap=32, output_type=OutputType.PROB, dtype=OutputDtype.FLOAT32
    )
    segment_scene(
        scene,
        probs,
        PositionPredictor(2),
        PROMPTS,
        options,
        model_id="stand-in",
        vector=VectorTarget(polygons, VectorOptions(min_area=30)),
    )
    frame = gpd.read_file(polygons)
    assert frame.crs == CRS_UTM and set(frame["model"]) == {"stand-in"}
    with rasterio.open(probs) as written:
        prob = written.read()
    for band, prompt in enumerate(PROMPTS):
        rows = frame[frame["prompt"] == prompt.id]
        assert set(rows["prompt_text"]) == {prompt.text}
        labels = rasterize(
            ((g, i + 1) for i, g in enumerate(rows.geometry)),
            out_shape=prob.shape[1:],
            transform=TRANSFORM,
        )
        threshold = prompt.threshold or 0.5
        for i, row in enumerate(rows.itertuples()):
            inside = prob[band][labels == i + 1].astype(np.float64)
            assert row.pixels == inside.size >= 30 and (inside >= threshold).all()
            assert row.area == pytest.approx(inside.size * 0.25)
            assert row.mean_prob == pytest.approx(inside.mean(), rel=1e-6)
            assert row.max_prob == pytest.approx(inside.max(), rel=1e-6)


def test_raster_and_vector_with_the_same_name_are_refused_before_any_work(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 64, 64)
    with pytest.raises(InputError, match="is also the raster output"):
        segment_scene(
            scene,
            tmp_path / "x.tif",
            PositionPredictor(1),
            PROMPTS[:1],
            SegmentOptions(tile=64, overlap=0),
            model_id="m",
            vector=VectorTarget(tmp_path / "x.tif"),
        )
