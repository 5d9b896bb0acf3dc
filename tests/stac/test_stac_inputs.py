"""Scenes from STAC files on disk: which asset, which bands, which path, which name."""

import json
from pathlib import Path

import pytest

from diffris.errors import InputError, InputNotFoundError
from diffris.inference.segment import SegmentOptions
from diffris.stac.inputs import read_stac
from diffris.stac.scenes import resolve_scenes
from tests.stac.stac_files import RGB, item_dict, write_catalog, write_item, write_json


def test_an_item_reads_its_visual_asset_resolved_against_the_items_folder(tmp_path):
    item_file = write_item(tmp_path, "S2A_T33TUL")
    (scene,) = read_stac(item_file)
    assert scene.source == str(tmp_path / "images" / "S2A_T33TUL.tif")
    assert scene.item_id == "S2A_T33TUL" and scene.asset == "visual"
    assert scene.item_href == str(item_file)
    assert scene.datetime == "2024-06-01T10:30:00+00:00"


def test_eo_bands_common_names_pick_red_green_blue_in_that_order(tmp_path):
    (tmp_path / "a.tif").touch()
    bgrn = [{"common_name": c} for c in ("blue", "green", "red", "nir")]
    item = write_json(tmp_path / "i.json", item_dict("a", "a.tif", key="image", bands=bgrn))
    (scene,) = read_stac(item)
    assert scene.asset == "image" and scene.bands == (3, 2, 1)
    # STAC 1.1 "bands" with eo:common_name say the same
    doc = item_dict("a", "a.tif", key="image")
    doc["assets"]["image"]["bands"] = [
        {"eo:common_name": c} for c in ("nir", "red", "green", "blue")
    ]
    (scene,) = read_stac(write_json(tmp_path / "j.json", doc))
    assert scene.bands == (2, 3, 4)


def test_bands_from_stac_apply_unless_bands_is_given(tmp_path):
    (tmp_path / "a.tif").touch()
    bgr = [{"common_name": c} for c in ("blue", "green", "red")]
    item = write_json(tmp_path / "i.json", item_dict("a", "a.tif", bands=bgr))
    resolved = resolve_scenes([str(item)])
    assert [o.bands for o in resolved.options(SegmentOptions())] == [(3, 2, 1)]
    assert [o.bands for o in resolved.options(SegmentOptions(bands=(1, 1, 1)))] == [(1, 1, 1)]
    assert resolved.names == ["a"]


def test_asset_flag_chooses_another_asset(tmp_path):
    (tmp_path / "a.tif").touch()
    (tmp_path / "b.tif").touch()
    extra = {"analytic": {"href": "b.tif", "type": "image/tiff", "roles": ["data"]}}
    item = write_json(tmp_path / "i.json", item_dict("a", "a.tif", extra_assets=extra))
    (scene,) = read_stac(item, asset="analytic")
    assert scene.source == str(tmp_path / "b.tif") and scene.asset == "analytic"


def test_an_item_collection_resolves_hrefs_against_its_own_file(tmp_path):
    for name in ("x", "y"):
        (tmp_path / "data" / f"{name}.tif").parent.mkdir(exist_ok=True)
        (tmp_path / "data" / f"{name}.tif").touch()
    features = [item_dict(n, f"data/{n}.tif", bands=RGB) for n in ("x", "y")]
    path = write_json(tmp_path / "search.json", {"type": "FeatureCollection", "features": features})
    scenes = read_stac(path)
    assert [s.item_id for s in scenes] == ["x", "y"]
    assert [s.source for s in scenes] == [str(tmp_path / "data" / f"{n}.tif") for n in "xy"]
    assert all(s.item_href is None for s in scenes)  # no file of their own to link to


def test_a_catalog_walks_its_collections_to_every_item(tmp_path):
    catalog = write_catalog(tmp_path, ["a", "b", "c"])
    scenes = read_stac(catalog)
    assert sorted(s.item_id for s in scenes) == ["a", "b", "c"]
    for scene in scenes:
        assert scene.source == str(tmp_path / "images" / f"{scene.item_id}.tif")
        assert Path(scene.item_href).is_file()
        assert json.loads(Path(scene.item_href).read_text())["id"] == scene.item_id


def test_item_ids_become_safe_file_names(tmp_path):
    (tmp_path / "a.tif").touch()
    item = write_json(tmp_path / "i.json", item_dict("LC08 L2/2024:06", "a.tif", bands=RGB))
    assert read_stac(item)[0].name == "LC08_L2_2024_06"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", r"is not valid JSON \(line 1"),
        ('{"type": "Feature", "properties": {}}', "not a STAC Item"),
        ("[1, 2]", "holds a JSON list"),
    ],
)
def test_bad_json_is_one_clear_error(tmp_path, content, expected):
    path = tmp_path / "item.json"
    path.write_text(content)
    with pytest.raises(InputError, match=expected):
        read_stac(path)


def test_an_item_without_a_usable_asset_names_its_assets(tmp_path):
    doc = item_dict("a", "a.tif", key="metadata")
    doc["assets"]["metadata"] = {"href": "a.xml", "type": "application/xml"}
    with pytest.raises(InputError, match=r"no 'visual' asset .*thumbnail, metadata.*--asset"):
        read_stac(write_json(tmp_path / "i.json", doc))
    with pytest.raises(InputError, match=r"no asset 'rgb' \(assets: thumbnail, metadata\)"):
        read_stac(tmp_path / "i.json", asset="rgb")


def test_a_missing_asset_file_is_refused_unless_the_archive_records_it(tmp_path):
    item = write_json(tmp_path / "i.json", item_dict("a", "gone/a.tif", bands=RGB))
    with pytest.raises(InputNotFoundError, match=r"asset 'visual': .*gone/a.tif not found"):
        read_stac(item)
    (scene,) = read_stac(item, require_files=False)
    assert scene.source == str(tmp_path / "gone" / "a.tif")


def test_a_catalog_linking_a_remote_document_offline_says_so(tmp_path):
    catalog = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "c",
        "description": "d",
        "links": [{"rel": "item", "href": "http://127.0.0.1:9/item.json"}],
    }
    with pytest.raises(InputError, match="cannot be read .*static catalogs on disk"):
        read_stac(write_json(tmp_path / "catalog.json", catalog))


def test_a_catalog_linking_a_missing_item_names_it(tmp_path):
    catalog = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "c",
        "description": "d",
        "links": [{"rel": "item", "href": "./items/nope.json"}],
    }
    with pytest.raises(InputNotFoundError, match="nope.json, which is missing"):
        read_stac(write_json(tmp_path / "catalog.json", catalog))


def test_remote_asset_hrefs_are_kept_for_gdal(tmp_path):
    item = write_json(tmp_path / "i.json", item_dict("a", "https://example.com/a.tif", bands=RGB))
    assert read_stac(item)[0].source == "https://example.com/a.tif"


def test_asset_without_stac_input_is_a_usage_error(tmp_path):
    with pytest.raises(InputError, match="--asset visual applies to STAC inputs"):
        resolve_scenes([str(tmp_path / "a.tif")], asset="visual")


def test_the_bundled_example_item_names_the_example_scene():
    from tests.stac.schema_store import core_validator

    example = Path(__file__).resolve().parents[2] / "examples" / "item.json"
    core_validator("item").validate(json.loads(example.read_text()))
    (scene,) = read_stac(example)
    assert scene.source == str(example.parent / "scene.tif")
    assert scene.item_id == "example-scene" and scene.bands == (1, 2, 3)
