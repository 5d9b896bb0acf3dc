"""The vector sink: real GeoPackage, GeoParquet, GeoJSON and FlatGeobuf files, read back with
geopandas and pyogrio."""

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize

from diffris.errors import InputError, OutputExistsError
from diffris.geo.sinks.spec import OutputSpec
from diffris.geo.vector import (
    FIELDS,
    AreaUnit,
    VectorOptions,
    VectorSink,
    parse_min_area,
)

HEIGHT, WIDTH = 150, 120
TRANSFORM = Affine(0.5, 0.0, 400000.0, 0.0, -0.5, 5000000.0)
CRS_UTM = CRS.from_epsg(32633)


def _probs() -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack(
        [0.5 + 0.45 * np.sin(x / 9.0) * np.cos(y / 13.0), 0.5 + 0.45 * np.cos(x / 17.0 + y / 23)]
    ).astype(np.float32)


def _spec(crs=CRS_UTM, transform=TRANSFORM) -> OutputSpec:
    return OutputSpec(
        width=WIDTH,
        height=HEIGHT,
        crs=crs,
        transform=transform,
        prompts=[("roofs", "the red roofs"), ("trees", "the trees", 0.6)],
    )


def _write(path, options=VectorOptions(), spec=None, **kwargs):
    spec = spec or _spec()
    probs, valid = _probs(), np.ones((HEIGHT, WIDTH), bool)
    with VectorSink(path, spec, options, model_id="stand-in", **kwargs) as sink:
        for row in range(0, HEIGHT, 40):
            sink.write_rows(row, probs[:, row : row + 40], valid[row : row + 40])
    return sink


def _read_all(path) -> gpd.GeoDataFrame:
    if path.suffix == ".gpkg":
        layers = [gpd.read_file(path, layer=layer) for layer, _ in pyogrio.list_layers(path)]
        return gpd.GeoDataFrame(
            gpd.pd.concat(layers, ignore_index=True), crs=layers[0].crs, geometry="geometry"
        )
    return gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)


@pytest.mark.parametrize("ext", [".gpkg", ".parquet", ".geojson", ".fgb"])
def test_every_format_opens_in_geopandas_with_the_scenes_crs_and_the_attributes(tmp_path, ext):
    path = tmp_path / f"polygons{ext}"
    sink = _write(path)
    frame = _read_all(path)
    assert frame.crs == CRS_UTM
    assert list(frame.columns) == [*FIELDS, "geometry"]
    assert len(frame) == sink.features > 2 and frame.geometry.is_valid.all()
    assert set(frame["prompt"]) == {"roofs", "trees"}
    assert set(frame["model"]) == {"stand-in"}
    assert (frame["area"] == frame["pixels"] * 0.25).all()  # 0.5 m pixels, exact outlines
    if ext == ".gpkg":
        assert [name for name, _ in pyogrio.list_layers(path)] == ["roofs", "trees"]
    else:  # pyogrio reads the converted file too (GeoParquet through geopandas only)
        if ext != ".parquet":
            assert pyogrio.read_info(path)["features"] == len(frame)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_polygons_rasterised_back_are_each_prompts_mask_at_its_threshold(tmp_path):
    path = tmp_path / "polygons.fgb"
    _write(path)
    frame = gpd.read_file(path)
    probs = _probs()
    for band, (prompt, threshold) in enumerate([("roofs", 0.5), ("trees", 0.6)]):
        shapes_ = frame.geometry[frame["prompt"] == prompt]
        again = rasterize(
            ((g, 1) for g in shapes_), out_shape=(HEIGHT, WIDTH), transform=TRANSFORM, fill=0
        )
        assert np.array_equal(again.astype(bool), probs[band] >= threshold)


def test_min_area_drops_small_polygons_in_pixels_and_in_square_metres(tmp_path):
    everything = _read_all(_write(tmp_path / "all.gpkg").path)
    cut = float(np.median(everything["pixels"]))
    by_pixels = _read_all(_write(tmp_path / "px.gpkg", VectorOptions(min_area=cut)).path)
    assert (by_pixels["pixels"] >= cut).all()
    assert len(by_pixels) == (everything["pixels"] >= cut).sum() < len(everything)
    metres = VectorOptions(min_area=cut * 0.25, min_area_unit=AreaUnit.SQUARE_METRES)
    by_metres = _read_all(_write(tmp_path / "m2.gpkg", metres).path)
    assert len(by_metres) == len(by_pixels)


def test_simplify_keeps_every_polygon_valid_and_within_the_tolerance(tmp_path):
    exact = _read_all(_write(tmp_path / "exact.gpkg").path)
    simple = _read_all(_write(tmp_path / "simple.gpkg", VectorOptions(simplify=1.0)).path)
    assert len(simple) == len(exact) and simple.geometry.is_valid.all()
    assert shapely.get_num_coordinates(simple.geometry.values).sum() < (
        shapely.get_num_coordinates(exact.geometry.values).sum()
    )
    distance = shapely.hausdorff_distance(simple.geometry.values, exact.geometry.values)
    assert distance.max() <= 1.0 + 1e-9


def test_an_existing_output_is_refused_and_replaced_with_overwrite(tmp_path):
    path = tmp_path / "polygons.gpkg"
    path.write_text("keep me")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        _write(path)
    assert path.read_text() == "keep me"
    _write(path, overwrite=True)
    assert len(_read_all(path)) > 0


def test_a_failure_mid_scene_leaves_nothing(tmp_path):
    path = tmp_path / "polygons.parquet"
    probs, valid = _probs(), np.ones((HEIGHT, WIDTH), bool)
    with (
        pytest.raises(RuntimeError, match="boom"),
        VectorSink(path, _spec(), VectorOptions(), model_id="m") as sink,
    ):
        sink.write_rows(0, probs[:, :40], valid[:40])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    sink = VectorSink(path, _spec(), VectorOptions(), model_id="m").open()
    sink.write_rows(0, probs[:, :40], valid[:40])
    with pytest.raises(RuntimeError, match="incomplete: 40 of 150 rows"):
        sink.commit()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: parse_min_area("ten"), "--min-area 'ten' is not an area"),
        (lambda: parse_min_area("5 acres"), "write pixels (50 or 50px) or square metres"),
        (lambda: VectorOptions(simplify=-1), "--simplify -1 must be zero or more"),
        (lambda: VectorOptions(min_area=float("nan")), "--min-area nan must be zero or more"),
    ],
)
def test_bad_options_are_one_line(make, message):
    with pytest.raises(InputError) as caught:
        make()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_square_metres_without_a_metric_crs_and_unknown_formats_are_refused(tmp_path):
    wgs84 = _spec(crs=CRS.from_epsg(4326), transform=Affine(1e-5, 0, 10, 0, -1e-5, 50))
    metres = VectorOptions(min_area=50, min_area_unit=AreaUnit.SQUARE_METRES)
    with pytest.raises(InputError, match="needs a CRS in metres.*EPSG:4326.*50px"):
        VectorSink(tmp_path / "a.gpkg", wgs84, metres, model_id="m")
    with pytest.raises(InputError, match="cannot tell the vector format of .*a.shp"):
        VectorSink(tmp_path / "a.shp", _spec(), VectorOptions(), model_id="m")
    with pytest.raises(InputError, match="--format 'kml' is not a vector format"):
        VectorSink(tmp_path / "a.gpkg", _spec(), VectorOptions(), model_id="m", format="kml")
    assert list(tmp_path.iterdir()) == []


def test_a_scene_georeferenced_by_gcps_only_is_refused_for_polygons(tmp_path):
    from rasterio.control import GroundControlPoint

    gcps = ([GroundControlPoint(0, 0, 400000.0, 5000000.0)], CRS_UTM)
    spec = OutputSpec(
        width=WIDTH, height=HEIGHT, crs=None, transform=Affine.identity(), prompts=[("a", "a")],
        gcps=gcps,
    )  # fmt: skip
    with pytest.raises(InputError, match="GCPs only.*gdalwarp"):
        VectorSink(tmp_path / "a.gpkg", spec, VectorOptions(), model_id="m")
    assert list(tmp_path.iterdir()) == []
