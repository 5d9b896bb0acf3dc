"""``diffris segment`` writing polygons: real files, the real tiny model."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.features import rasterize
from typer.testing import CliRunner

from diffris_cli.app import app
from tests.inference.scenes import CRS_UTM, TRANSFORM, position_scene

runner = CliRunner()
TINY = ["--model", "tiny", "--tile", "128", "--overlap", "32", "--threshold", "0.5"]


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return position_scene(tmp_path / "scene.tif", 200, 180)


def _one_error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_vector_only_output_has_a_layer_per_prompt(tmp_path, scene):
    out = tmp_path / "buildings.gpkg"
    args = ["segment", str(scene), "-t", "roofs", "-t", "the trees", "-o", str(out), *TINY]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["scenes"]
    assert entry["output"] == entry["vector"] == str(out)
    layers = [name for name, _ in pyogrio.list_layers(out)]
    assert len(layers) == 2 and sorted(p.name for p in tmp_path.iterdir()) == [
        "buildings.gpkg",
        "scene.tif",
    ]
    total = sum(len(gpd.read_file(out, layer=layer)) for layer in layers)
    assert entry["polygons"] == total


def test_raster_and_polygons_in_one_run_agree(tmp_path, scene):
    masks, polygons = tmp_path / "masks.tif", tmp_path / "polygons.parquet"
    args = ["segment", str(scene), "-t", "roofs", "-o", str(masks), "--vector", str(polygons)]
    result = runner.invoke(app, [*args, *TINY, "-q"])
    assert result.exit_code == 0, result.output
    with rasterio.open(masks) as written:
        mask = written.read(1)
    frame = gpd.read_parquet(polygons)
    assert frame.crs == CRS_UTM and frame.geometry.is_valid.all()
    again = rasterize(((g, 1) for g in frame.geometry), out_shape=mask.shape, transform=TRANSFORM)
    assert np.array_equal(again, mask == 1)


@pytest.mark.parametrize(
    ("extra", "output", "expected"),
    [
        (["--min-area", "ten"], "p.gpkg", "--min-area 'ten' is not an area"),
        (["--simplify", "-2"], "p.gpkg", "--simplify -2.0 must be zero or more"),
        (["--simplify", "1"], "m.tif", "--simplify applies to polygons; add --vector"),
        (["--no-holes"], "m.tif", "--no-holes applies to polygons"),
        (["--holes", "--no-holes"], "p.gpkg", "--holes and --no-holes contradict each other"),
        (["--vector", "q.gpkg"], "p.gpkg", "already writes polygons"),
        (
            ["--vector", "q.gpkg", "--vector-format", "kml"],
            "m.tif",
            "--vector-format 'kml' is not one of",
        ),
        (["--vector", "q.shp"], "m.tif", "cannot tell the vector format"),
        (["--format", "gpkg", "--preview", "x.png"], "p.out", "--preview draws the raster"),
        (["--format", "shp"], "p.shp", "--format 'shp' is not one of: gtiff, cog, zarr, gpkg"),
    ],
)
def test_bad_polygon_options_are_one_line(tmp_path, scene, extra, output, expected):
    extra = [str(tmp_path / e) if e[:2] in ("q.", "x.") else e for e in extra]
    args = ["segment", str(scene), "-t", "roofs", "-o", str(tmp_path / output), *TINY, *extra]
    assert expected in _one_error_line(runner.invoke(app, args))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_existing_polygons_are_refused_before_the_model_runs(tmp_path, scene):
    out = tmp_path / "p.fgb"
    out.write_bytes(b"keep me")
    args = ["segment", str(scene), "-t", "roofs", "-o", str(out), "--model", "nowhere"]
    assert "exists; pass --overwrite" in _one_error_line(runner.invoke(app, args))
    assert out.read_bytes() == b"keep me"


def test_holes_and_no_holes_choose_whether_polygons_keep_their_interior_rings(tmp_path, scene):
    """``--holes`` (the default) keeps the rings of the mask; ``--no-holes`` fills them, and the
    filled polygons cover exactly the kept ones plus their holes."""
    frames = {}
    for flag in ("--holes", "--no-holes"):
        out = tmp_path / f"{flag.strip('-')}.gpkg"
        args = ["segment", str(scene), "-t", "roofs", "-o", str(out), *TINY]
        # At this threshold the tiny model's probabilities give regions with holes.
        result = runner.invoke(app, [*args, "--threshold", "0.424", flag, "-q"])
        assert result.exit_code == 0, result.output
        frames[flag] = gpd.read_file(out)
    rings = frames["--holes"].geometry.map(lambda g: len(g.interiors))
    assert rings.sum() > 0, "the scene must give at least one polygon with a hole"
    assert (frames["--no-holes"].geometry.map(lambda g: len(g.interiors)) == 0).all()
    kept, filled = frames["--holes"].union_all(), frames["--no-holes"].union_all()
    assert filled.difference(kept).area > 0
    assert kept.difference(filled).area == pytest.approx(0.0, abs=1e-6)
