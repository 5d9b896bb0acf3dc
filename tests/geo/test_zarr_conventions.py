"""A written Zarr store validates against the released ``proj`` and ``spatial`` v0.1 schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rasterio.crs import CRS

from diffris.geo.sinks.zarr import PROJ_CONVENTION, SPATIAL_CONVENTION
from tests.geo.sink_helpers import make_spec, sample_data, write_output

jsonschema = pytest.importorskip("jsonschema")

SCHEMAS = Path(__file__).parent / "data" / "zarr_conventions"


def _schema(name: str) -> dict:
    path = SCHEMAS / f"{name}-v0.1.schema.json"
    if not path.is_file():
        pytest.skip(f"{path.name} is not vendored; see {SCHEMAS / 'README.md'}")
    return json.loads(path.read_text())


def _node(store: Path, name: str = "") -> dict:
    return json.loads((store / name / "zarr.json").read_text())


def _errors(schema: dict, document: dict) -> list[str]:
    # The schemas say draft-07, whose strict reading ignores keywords beside "$ref" (and with
    # them the registration check); upstream validates with Ajv, which applies them, as
    # draft 2020-12 does. The other keywords they use mean the same in both drafts.
    validator = jsonschema.Draft202012Validator(schema)
    return [error.message for error in validator.iter_errors(document)]


@pytest.mark.parametrize("crs", [CRS.from_epsg(32633), None], ids=["utm", "no-crs"])
def test_store_validates_against_released_schemas(tmp_path: Path, crs: CRS | None) -> None:
    proj, spatial = _schema("proj"), _schema("spatial")
    spec = make_spec(crs=crs)
    store = tmp_path / "out.zarr"
    write_output(store, spec, sample_data(spec))
    data, group = _node(store, "mask"), _node(store)
    assert _errors(spatial, data) == []
    if crs is None:
        assert "proj:code" not in data["attributes"] and "proj:code" not in group["attributes"]
        return
    assert _errors(proj, data) == []
    assert _errors(proj, group) == []


def test_registrations_are_the_released_ones() -> None:
    for registration, name in ((PROJ_CONVENTION, "proj"), (SPATIAL_CONVENTION, "spatial")):
        schema = _schema(name)
        assert registration["schema_url"] == schema["$id"]
        assert _errors(schema["$defs"]["conventionMetadata"], registration) == []
