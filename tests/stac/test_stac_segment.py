"""``diffris segment item.json --stac``: real scenes, the tiny model, real STAC on disk."""

import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from typer.testing import CliRunner

from diffris_cli.app import app
from tests.stac.schema_store import validate_item
from tests.stac.stac_files import item_dict, write_bgrn_scene, write_item, write_json

runner = CliRunner()


def _segment(*args: str) -> object:
    return runner.invoke(
        app, ["segment", *args, "--model", "tiny", "--tile", "128", "--overlap", "32", "-q"]
    )


def _one_error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_an_item_is_segmented_under_its_id_with_a_stac_item_of_the_written_file(tmp_path):
    item_file = write_item(tmp_path / "in", "S2B_33TUL_20240601")
    out = tmp_path / "out"
    result = _segment(
        str(item_file), "-t", "the river", "-t", "red roofs", "-o", f"{out}/", "--stac"
    )
    assert result.exit_code == 0, result.output
    mask = out / "S2B_33TUL_20240601.tif"
    item_path = out / "S2B_33TUL_20240601.stac.json"
    document = json.loads(item_path.read_text())
    validate_item(document)  # STAC 1.1.0 core schema (vendored) and the extension fields
    item = pystac.Item.from_file(str(item_path))
    assert item.id == "S2B_33TUL_20240601"
    assert item.datetime.isoformat() == "2024-06-01T10:30:00+00:00"  # the input's acquisition
    assert item.properties["diffris:model"] == "tiny"
    with rasterio.open(mask) as written:
        # the footprint, transformed here with pyproj rather than rasterio
        to_wgs84 = Transformer.from_crs(written.crs, "EPSG:4326", always_xy=True)
        b = written.bounds
        corners = [(b.left, b.top), (b.right, b.top), (b.right, b.bottom), (b.left, b.bottom)]
        expected = [to_wgs84.transform(x, y) for x, y in corners]
        ring = document["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 5
        np.testing.assert_allclose(ring[:4], expected, atol=1e-9)
        west, south, east, north = document["bbox"]
        lons, lats = zip(*expected, strict=True)
        assert west <= min(lons) and east >= max(lons) and south <= min(lats)
        assert north >= max(lats)
        np.testing.assert_allclose(
            document["bbox"], [min(lons), min(lats), max(lons), max(lats)], atol=1e-6
        )
        props = document["properties"]
        assert props["proj:code"] == f"EPSG:{written.crs.to_epsg()}"
        assert props["proj:transform"] == list(written.transform)[:6]
        assert props["proj:shape"] == [written.height, written.width]
        asset = document["assets"]["data"]
        assert [band["description"] for band in asset["raster:bands"]] == list(written.descriptions)
        assert [band["data_type"] for band in asset["raster:bands"]] == list(written.dtypes)
        assert [band["nodata"] for band in asset["raster:bands"]] == list(written.nodatavals)
        assert [band["scale"] for band in asset["raster:bands"]] == list(written.scales)
    assert asset["title"] == "the river; red roofs"
    assert item.assets["data"].get_absolute_href() == str(mask)
    data = mask.read_bytes()
    assert asset["file:size"] == len(data)
    assert asset["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()
    (link,) = [link for link in item.links if link.rel == "derived_from"]
    assert Path(link.get_absolute_href()) == item_file
    assert not list(out.glob(".*"))  # no temporary file left


def test_probabilities_record_their_scale_and_float_nodata(tmp_path):
    item_file = write_item(tmp_path / "in", "a")
    out = tmp_path / "p.tif"
    args = ["-t", "x", "-o", str(out), "--stac", "--output-type", "prob", "--dtype", "float32"]
    assert _segment(str(item_file), *args).exit_code == 0
    document = json.loads((tmp_path / "p.stac.json").read_text())
    validate_item(document)
    (band,) = document["assets"]["data"]["raster:bands"]
    assert band["data_type"] == "float32" and band["nodata"] == "nan"


def test_an_item_collection_writes_one_output_per_item_id(tmp_path):
    for name in ("x", "y"):
        write_item(tmp_path, name)
    features = [json.loads((tmp_path / "items" / f"{n}.json").read_text()) for n in "xy"]
    for feature in features:  # relative to the collection file now
        feature["assets"]["visual"]["href"] = f"images/{feature['id']}.tif"
    collection = write_json(
        tmp_path / "found.json", {"type": "FeatureCollection", "features": features}
    )
    out = tmp_path / "out"
    assert _segment(str(collection), "-t", "river", "-o", f"{out}/", "--stac").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.stac.json", "x.tif", "y.stac.json", "y.tif"]
    item = json.loads((out / "x.stac.json").read_text())
    assert not [link for link in item["links"] if link["rel"] == "derived_from"]


def test_stac_bands_pick_red_green_blue_from_a_four_band_scene(tmp_path):
    write_bgrn_scene(tmp_path / "bgrn.tif")
    bands = [{"common_name": c} for c in ("blue", "green", "red", "nir")]
    item = write_json(tmp_path / "i.json", item_dict("bgrn", "bgrn.tif", key="image", bands=bands))
    # the raster alone does not say which bands are red, green and blue
    plain = _segment(str(tmp_path / "bgrn.tif"), "-t", "x", "-o", str(tmp_path / "plain.tif"))
    assert "choose them with --bands" in _one_error_line(plain)
    assert _segment(str(item), "-t", "x", "-o", str(tmp_path / "stac.tif")).exit_code == 0
    assert (tmp_path / "stac.tif").is_file()


def test_plain_rasters_get_items_too_without_a_source_link(tmp_path):
    from tests.inference.scenes import position_scene

    scene = position_scene(tmp_path / "scene.tif", 200, 150)
    assert _segment(str(scene), "-t", "x", "-o", str(tmp_path / "m.tif"), "--stac").exit_code == 0
    document = json.loads((tmp_path / "m.stac.json").read_text())
    validate_item(document)
    assert document["id"] == "m" and document["links"] == []


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_text("{oops"), "is not valid JSON"),
        (
            lambda p: write_json(p, item_dict("a", "missing.tif")),
            "asset 'visual': .*missing.tif not found",
        ),
        (
            lambda p: write_json(p, {**item_dict("a", "a.tif"), "assets": {}}),
            "has no 'visual' asset",
        ),
    ],
)
def test_bad_stac_is_one_line(tmp_path, make, expected):
    path = tmp_path / "item.json"
    make(path)
    line = _one_error_line(_segment(str(path), "-t", "x", "-o", str(tmp_path / "o.tif")))
    assert __import__("re").search(expected, line), line


def test_a_remote_href_offline_fails_in_one_line_before_the_model_loads(tmp_path):
    item = write_json(tmp_path / "i.json", item_dict("a", "http://127.0.0.1:9/a.tif"))
    line = _one_error_line(_segment(str(item), "-t", "x", "-o", str(tmp_path / "o.tif")))
    assert "127.0.0.1:9/a.tif" in line
    assert not (tmp_path / "o.tif").exists()


def test_stac_refuses_zarr_outputs_up_front(tmp_path):
    item_file = write_item(tmp_path, "a")
    line = _one_error_line(
        _segment(str(item_file), "-t", "x", "-o", str(tmp_path / "o.zarr"), "--stac")
    )
    assert "--stac describes GeoTIFF/COG outputs" in line


def test_the_validator_rejects_a_broken_item(tmp_path):
    from tests.inference.scenes import position_scene

    scene = position_scene(tmp_path / "scene.tif", 200, 150)
    assert _segment(str(scene), "-t", "x", "-o", str(tmp_path / "m.tif"), "--stac").exit_code == 0
    document = json.loads((tmp_path / "m.stac.json").read_text())
    for broken in (
        {**document, "bbox": [1, 2]},
        {
            **document,
            "properties": {k: v for k, v in document["properties"].items() if k != "datetime"},
        },
        {**document, "properties": {**document["properties"], "proj:shape": [0, 3]}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate_item(broken)


def test_derived_from_is_relative_inside_one_tree_and_absolute_across_trees(tmp_path):
    from diffris.stac.items import _relative_href

    assert _relative_href("/data/stac/a.json", Path("/data/masks")) == "../stac/a.json"
    assert _relative_href("/data/stac/a.json", Path("/tmp/masks")) == "/data/stac/a.json"
