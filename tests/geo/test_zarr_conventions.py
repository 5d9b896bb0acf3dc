"""A written Zarr store validates against the released ``proj`` and ``spatial`` v0.1 conventions.

The validators are zarr-cm's (PyPI), the conventions' own Python implementation: its ``r3``
revisions are the released ``v0.1`` tags and accept only their registration (schema_url,
spec_url, uuid), so a store that names a tag that was never released is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zarr_cm.proj._r3 as proj_v01
import zarr_cm.spatial._r3 as spatial_v01
from rasterio.crs import CRS

from diffris.geo.sinks.zarr import PROJ_CONVENTION, SPATIAL_CONVENTION
from tests.geo.sink_helpers import make_spec, sample_data, write_output


def _node(store: Path, name: str = "") -> dict:
    return json.loads((store / name / "zarr.json").read_text())


@pytest.mark.parametrize("crs", [CRS.from_epsg(32633), None], ids=["utm", "no-crs"])
def test_store_validates_against_released_conventions(tmp_path: Path, crs: CRS | None) -> None:
    spec = make_spec(crs=crs)
    store = tmp_path / "out.zarr"
    write_output(store, spec, sample_data(spec))
    data, group = _node(store, "mask"), _node(store)
    spatial_v01.validate_array_metadata(data)
    if crs is None:
        assert "proj:code" not in data["attributes"] and "proj:code" not in group["attributes"]
        return
    proj_v01.validate_array_metadata(data)
    proj_v01.validate_group_metadata(group)
    assert data["attributes"]["proj:code"] == "EPSG:32633"


def test_registrations_are_the_released_ones() -> None:
    assert PROJ_CONVENTION["schema_url"] == proj_v01.SCHEMA_URL
    assert PROJ_CONVENTION["uuid"] == proj_v01.UUID
    assert SPATIAL_CONVENTION["schema_url"] == spatial_v01.SCHEMA_URL
    assert SPATIAL_CONVENTION["uuid"] == spatial_v01.UUID


def test_a_tag_that_was_never_released_is_refused(tmp_path: Path) -> None:
    spec = make_spec(crs=CRS.from_epsg(32633))
    store = tmp_path / "out.zarr"
    write_output(store, spec, sample_data(spec))
    data = _node(store, "mask")
    for registration in data["attributes"]["zarr_conventions"]:
        registration["schema_url"] = registration["schema_url"].replace("/v0.1/", "/v1/")
    with pytest.raises(ValueError, match="does not recognize"):
        proj_v01.validate_array_metadata(data)
