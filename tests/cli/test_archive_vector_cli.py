"""``diffris archive --vector-format``: polygons beside each raster, in the ledger, resumable."""

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.features import rasterize
from typer.testing import CliRunner

from diffris_cli.app import app
from tests.archive.archive_helpers import tiny_archive_args, write_scene

runner = CliRunner()


def _archive(source, out, prompts, *extra):
    result = runner.invoke(app, tiny_archive_args(source, prompts, out, "--json", *extra))
    statuses = {}
    if result.stdout.strip().startswith("{"):
        for row in json.loads(result.stdout)["scenes"]:
            statuses[row["input"].rsplit("/", 1)[-1]] = row["status"]
    return result, statuses


@pytest.fixture
def archive_in(tmp_path):
    write_scene(tmp_path / "in" / "a.tif", seed=1)
    write_scene(tmp_path / "in" / "b.tif", seed=2)
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("- id: roofs\n  text: the red roofs\n- id: trees\n  text: the trees\n")
    return tmp_path / "in", prompts


def test_polygons_beside_each_raster_agree_with_it_and_a_rerun_skips(tmp_path, archive_in):
    source, prompts = archive_in
    out = tmp_path / "out"
    first, statuses = _archive(source, out, prompts, "--vector-format", "gpkg")
    assert first.exit_code == 0, first.output
    assert statuses == {"a.tif": "done", "b.tif": "done"}
    for name in ("a", "b"):
        with rasterio.open(out / f"{name}.tif") as written:
            masks, transform, crs = written.read(), written.transform, written.crs
        layers = [layer for layer, _ in pyogrio.list_layers(out / f"{name}.gpkg")]
        assert layers == ["roofs", "trees"]
        for band, layer in enumerate(layers):
            frame = gpd.read_file(out / f"{name}.gpkg", layer=layer)
            assert frame.crs == crs
            again = rasterize(
                ((g, 1) for g in frame.geometry), out_shape=masks.shape[1:], transform=transform
            )
            assert np.array_equal(again, masks[band] == 1)
    _, statuses = _archive(source, out, prompts, "--vector-format", "gpkg")
    assert statuses == {"a.tif": "skipped", "b.tif": "skipped"}


def test_a_deleted_or_changed_polygons_file_reprocesses_its_scene(tmp_path, archive_in):
    source, prompts = archive_in
    out = tmp_path / "out"
    _archive(source, out, prompts, "--vector-format", "parquet")
    (out / "a.parquet").unlink()
    with open(out / "b.parquet", "ab") as handle:
        handle.write(b"junk")
    _, statuses = _archive(source, out, prompts, "--vector-format", "parquet")
    assert statuses == {"a.tif": "done", "b.tif": "done"}
    assert gpd.read_parquet(out / "a.parquet").crs is not None
    assert not (out / "b.parquet").read_bytes().endswith(b"junk")  # rewritten whole
    _, statuses = _archive(source, out, prompts, "--vector-format", "parquet")
    assert statuses == {"a.tif": "skipped", "b.tif": "skipped"}


def test_adding_polygons_to_an_archive_reprocesses_it(tmp_path, archive_in):
    source, prompts = archive_in
    out = tmp_path / "out"
    _archive(source, out, prompts)
    _, statuses = _archive(source, out, prompts, "--vector-format", "gpkg", "--min-area", "3")
    assert statuses == {"a.tif": "done", "b.tif": "done"}
    assert (out / "a.gpkg").is_file() and (out / "b.gpkg").is_file()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--vector-format", "fgb"], "--vector-format fgb: the archive writes gpkg, parquet"),
        (["--vector-format", "gpkg", "--split-rows", "64"], "do not go together"),
        (["--simplify", "2"], "apply to polygons; add --vector-format gpkg"),
    ],
)
def test_bad_vector_options_are_one_line(tmp_path, archive_in, extra, expected):
    source, prompts = archive_in
    result, _ = _archive(source, tmp_path / "out", prompts, *extra)
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.output
