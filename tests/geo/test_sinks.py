"""Sinks: real GeoTIFF, COG and Zarr outputs in tmp_path, read back with rasterio, zarr, xarray."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from rasterio.crs import CRS
from sink_helpers import (
    PROMPTS,
    TAGS,
    TRANSFORM,
    cog_problems,
    make_spec,
    sample_data,
    write_output,
)

from diffris.errors import InputError, OutputExistsError, OutputNotWritableError
from diffris.geo.sinks import (
    GeoTiffSink,
    OutputSpec,
    check_output,
    clean_stale_partials,
    open_sink,
    parse_creation_options,
    resolve_format,
)
from diffris.geo.sinks.cog import overview_factors

REPO = Path(__file__).resolve().parents[2]
NAMES = {"gtiff": "out.tif", "cog": "out.cog.tif", "zarr": "out.zarr"}
TEXTS = [p[1] for p in PROMPTS]


def read_back(path: Path) -> dict:
    """Values and georeferencing of an output, through rasterio (TIFF) or zarr (store)."""
    if path.suffix == ".zarr":
        root = zarr.open_group(str(path), mode="r")
        array = root["mask"] if "mask" in root else root["prob"]
        grid = root["spatial_ref"].attrs
        crs = CRS.from_wkt(grid["spatial_ref"]) if "spatial_ref" in grid else None
        gt = [float(v) for v in grid["GeoTransform"].split()]
        return {
            "data": array[:],
            "crs": crs,
            "transform": rasterio.Affine.from_gdal(*gt),
            "shape": array.shape,
            "nodata": array.fill_value,
            "labels": list(root["prompt_text"][:]),
            "tags": dict(root.attrs),
        }
    with rasterio.open(path) as dataset:
        return {
            "data": dataset.read(),
            "crs": dataset.crs,
            "transform": dataset.transform,
            "shape": (dataset.count, dataset.height, dataset.width),
            "nodata": dataset.nodata,
            "labels": list(dataset.descriptions),
            "tags": dataset.tags(),
            "band_tags": [dataset.tags(b) for b in range(1, dataset.count + 1)],
        }


# --- every format: georeferencing, metadata, streaming --------------------------------------------


@pytest.mark.parametrize("fmt", ["gtiff", "cog", "zarr"])
def test_output_matches_spec(tmp_path: Path, fmt: str) -> None:
    spec = make_spec()
    data = sample_data(spec)
    path = tmp_path / NAMES[fmt]
    write_output(path, spec, data)
    out = read_back(path)
    assert out["crs"] == spec.crs
    assert out["transform"].almost_equals(spec.transform, precision=1e-9)
    assert out["shape"] == (2, spec.height, spec.width)
    assert out["nodata"] == 255
    assert out["labels"] == TEXTS
    assert {k: out["tags"][k] for k in TAGS} == TAGS
    np.testing.assert_array_equal(out["data"], data)
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary or sidecar left


@pytest.mark.parametrize("fmt", ["gtiff", "cog"])
def test_tiff_band_tags_and_layout(tmp_path: Path, fmt: str) -> None:
    spec = make_spec()
    path = tmp_path / NAMES[fmt]
    write_output(path, spec, sample_data(spec))
    out = read_back(path)
    assert out["band_tags"][0] == {"prompt_id": "roads", "threshold": "0.4"}
    assert out["band_tags"][1] == {"prompt_id": "p2", "threshold": "0.5"}
    assert out["tags"]["output_type"] == "mask"
    with rasterio.open(path) as dataset:
        assert dataset.block_shapes == [(32, 32)] * 2
        assert dataset.compression.name == "deflate"


@pytest.mark.parametrize("fmt", ["gtiff", "cog", "zarr"])
def test_odd_row_bands_equal_one_full_write(tmp_path: Path, fmt: str) -> None:
    spec = make_spec()
    data = sample_data(spec, seed=3)
    banded, whole = tmp_path / "a" / NAMES[fmt], tmp_path / "b" / NAMES[fmt]
    write_output(banded, spec, data)
    write_output(whole, spec, data, bands=[spec.height])
    np.testing.assert_array_equal(read_back(banded)["data"], read_back(whole)["data"])
    if fmt == "gtiff":  # block-aligned buffering makes the GDAL calls, hence the bytes, identical
        assert banded.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("fmt", ["gtiff", "cog", "zarr"])
def test_no_crs(tmp_path: Path, fmt: str) -> None:
    spec = make_spec(crs=None)
    path = tmp_path / NAMES[fmt]
    write_output(path, spec, sample_data(spec))
    out = read_back(path)
    assert out["crs"] is None
    assert out["transform"].almost_equals(TRANSFORM, precision=1e-9)
    if fmt == "zarr":
        attrs = zarr.open_array(str(path / "mask"), mode="r").attrs
        assert not any(key.startswith("proj:") for key in attrs)
        assert attrs["spatial:transform"] == list(TRANSFORM)[:6]


@pytest.mark.parametrize("fmt", ["gtiff", "zarr"])
def test_float32_probabilities_with_nan_nodata(tmp_path: Path, fmt: str) -> None:
    spec = make_spec(output_type="prob", dtype="float32")
    data = sample_data(spec)
    path = tmp_path / NAMES[fmt]
    write_output(path, spec, data)
    out = read_back(path)
    assert math.isnan(out["nodata"])
    np.testing.assert_array_equal(out["data"], data)  # NaN positions compare equal here
    assert np.isnan(data).any()


def test_slabs_are_block_aligned(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []

    class Recording(GeoTiffSink):
        def _write_slab(self, row_off: int, slab: np.ndarray) -> None:
            calls.append((row_off, slab.shape[1]))
            super()._write_slab(row_off, slab)

    spec = make_spec()
    data = sample_data(spec)
    with Recording(tmp_path / "out.tif", spec) as sink:
        for row_off in range(0, 100, 7):
            sink.write_rows(row_off, data[:, row_off : row_off + 7])
    assert calls == [(0, 32), (32, 32), (64, 32), (96, 4)]


# --- COG ------------------------------------------------------------------------------------------


def test_cog_is_valid_and_keeps_metadata(tmp_path: Path) -> None:
    spec = make_spec(output_type="prob")
    data = sample_data(spec)
    path = tmp_path / "out.cog.tif"
    write_output(path, spec, data)
    assert cog_problems(path) == []
    with rasterio.open(path) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert dataset.overviews(1) == overview_factors(150, 100, 32) == [2, 4, 8]
        assert dataset.block_shapes == [(32, 32)] * 2
        assert dataset.descriptions == tuple(TEXTS)
        assert dataset.scales == (1 / 254, 1 / 254)
        np.testing.assert_array_equal(dataset.read(), data)


def test_plain_geotiff_is_not_reported_as_cog(tmp_path: Path) -> None:
    spec = make_spec()
    path = tmp_path / "plain.tif"
    write_output(path, spec, sample_data(spec))
    assert cog_problems(path)  # the checker can fail


# --- Zarr through xarray + rioxarray --------------------------------------------------------------


def test_zarr_reads_back_through_xarray_and_rioxarray(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    spec = make_spec()
    data = sample_data(spec)
    path = tmp_path / "out.zarr"
    write_output(path, spec, data)
    ds = xr.open_zarr(path, consolidated=True)
    mask = ds["mask"]
    assert mask.dims == ("prompt", "y", "x")
    assert ds.rio.crs == spec.crs
    for recalc in (False, True):  # from GeoTransform, then from the x/y coordinates
        assert mask.rio.transform(recalc=recalc).almost_equals(spec.transform, precision=1e-9)
    np.testing.assert_allclose(ds.x.values, 500_000 + 10 * (np.arange(150) + 0.5))
    np.testing.assert_allclose(ds.y.values, 5_000_000 - 10 * (np.arange(100) + 0.5))
    assert list(ds.prompt.values) == ["roads", "p2"]
    assert list(ds.prompt_text.values) == TEXTS
    assert mask.encoding["chunks"] == (1, 32, 32)
    values = mask.values
    np.testing.assert_array_equal(np.isnan(values), data == 255)  # nodata decoded as missing
    np.testing.assert_array_equal(values[data != 255], data[data != 255])
    assert mask.rio.encoded_nodata == 255
    assert ds.attrs["model"] == "tiny"
    assert [p["threshold"] for p in ds.attrs["prompts"]] == [0.4, 0.5]


def test_zarr_geographic_crs(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    transform = rasterio.Affine(0.001, 0.0, 15.0, 0.0, -0.001, 45.0)
    spec = make_spec(crs=CRS.from_epsg(4326), transform=transform)
    path = tmp_path / "geo.zarr"
    write_output(path, spec, sample_data(spec))
    ds = xr.open_zarr(path)
    assert ds.rio.crs == CRS.from_epsg(4326)
    assert ds["mask"].rio.transform().almost_equals(transform, precision=1e-12)
    assert (ds.x.attrs["units"], ds.y.attrs["standard_name"]) == ("degrees_east", "latitude")


def test_zarr_uint8_probabilities_decode_to_probabilities(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    spec = make_spec(output_type="prob")
    prob = np.random.default_rng(1).random((2, 100, 150), dtype=np.float32)
    path = tmp_path / "p.zarr"
    write_output(path, spec, spec.encode(prob))
    decoded = xr.open_zarr(path)["prob"].values
    np.testing.assert_allclose(decoded, prob, atol=0.5 / 254 + 1e-6)


def test_zarr_geozarr_conventions(tmp_path: Path) -> None:
    spec = make_spec()
    path = tmp_path / "out.zarr"
    write_output(path, spec, sample_data(spec))
    attrs = dict(zarr.open_array(str(path / "mask"), mode="r").attrs)
    assert {c["name"] for c in attrs["zarr_conventions"]} == {"proj", "spatial"}
    assert attrs["proj:code"] == "EPSG:32633"
    assert CRS.from_wkt(attrs["proj:wkt2"]) == spec.crs
    assert attrs["spatial:dimensions"] == ["y", "x"]
    assert attrs["spatial:transform"] == [10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0]
    assert attrs["spatial:shape"] == [100, 150]
    assert attrs["spatial:bbox"] == [500_000.0, 4_999_000.0, 501_500.0, 5_000_000.0]
    grid = zarr.open_array(str(path / "spatial_ref"), mode="r").attrs
    assert grid["grid_mapping_name"] == "transverse_mercator"
    assert grid["GeoTransform"] == "500000.0 10.0 0.0 5000000.0 0.0 -10.0"
    root = zarr.open_group(str(path), mode="r", use_consolidated=True)
    assert root.metadata.consolidated_metadata is not None


def test_zarr_creation_options(tmp_path: Path) -> None:
    spec = make_spec(creation_options={"COMPRESS": "GZIP", "LEVEL": "6"})
    path = tmp_path / "out.zarr"
    write_output(path, spec, sample_data(spec))
    (codec,) = zarr.open_array(str(path / "mask"), mode="r").compressors
    assert type(codec).__name__ == "GzipCodec" and codec.level == 6
    for bad in ({"FOO": "1"}, {"COMPRESS": "LZ4"}, {"LEVEL": "high"}):
        with pytest.raises(InputError, match="--co"):
            open_sink(tmp_path / "bad.zarr", make_spec(creation_options=bad))


# --- atomicity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["gtiff", "cog", "zarr"])
def test_exception_leaves_nothing(tmp_path: Path, fmt: str) -> None:
    spec = make_spec()
    path = tmp_path / NAMES[fmt]
    with pytest.raises(RuntimeError, match="boom"), open_sink(path, spec) as sink:
        sink.write_rows(0, sample_data(spec)[:, :40])
        assert sink.partial is not None and not path.exists()
        assert all(name.startswith(f".{path.name}.partial-") for name in os.listdir(tmp_path))
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_incomplete_output_is_not_published(tmp_path: Path) -> None:
    spec = make_spec()
    with (
        pytest.raises(RuntimeError, match="40 of 100 rows"),
        open_sink(tmp_path / "o.tif", spec) as s,
    ):
        s.write_rows(0, sample_data(spec)[:, :40])
    assert os.listdir(tmp_path) == []


KILL_SCRIPT = """
import os, signal, numpy as np
from affine import Affine
from diffris.geo.sinks import OutputSpec, open_sink
spec = OutputSpec(width=150, height=100, crs=None, transform=Affine(10, 0, 0, 0, -10, 0),
                  prompts=[("a", "roads")], block_size=32)
sink = open_sink({path!r}, spec).__enter__()
sink.write_rows(0, np.zeros((1, 50, 150), "uint8"))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("fmt", ["gtiff", "cog", "zarr"])
def test_killed_process_leaves_only_a_dot_temporary(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / NAMES[fmt]
    script = textwrap.dedent(KILL_SCRIPT.format(path=str(path)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    assert not path.exists()
    left = os.listdir(tmp_path)
    assert left and all(n.startswith(f".{path.name}.partial-") for n in left)
    assert sorted(p.name for p in clean_stale_partials(tmp_path)) == sorted(left)
    assert os.listdir(tmp_path) == []


def test_clean_stale_partials_spares_live_processes_and_other_files(tmp_path: Path) -> None:
    mine = tmp_path / f".a.tif.partial-{os.getpid()}-0123abcd"
    parent = tmp_path / f".b.zarr.old-{os.getppid()}-0123abcd"
    other = tmp_path / ".hidden-file"
    for path in (mine, other):
        path.write_text("x")
    parent.mkdir()
    assert clean_stale_partials(tmp_path) == []
    assert clean_stale_partials(tmp_path / "missing") == []


def test_clean_stale_partials_restores_an_old_output_left_mid_overwrite(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(dead.stdout)
    aside = tmp_path / f".out.zarr.old-{pid}-0123abcd"
    aside.mkdir()
    (aside / "zarr.json").write_text("{}")
    stale = tmp_path / f".out.zarr.partial-{pid}-89abcdef"
    stale.mkdir()
    assert clean_stale_partials(tmp_path) == [stale]
    assert os.listdir(tmp_path) == ["out.zarr"]
    assert (tmp_path / "out.zarr" / "zarr.json").read_text() == "{}"


@pytest.mark.parametrize("fmt", ["gtiff", "zarr"])
def test_existing_output_refused_then_replaced(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / NAMES[fmt]
    old, new = make_spec(prompts=[("old", "old")]), make_spec()
    write_output(path, old, sample_data(old))
    message = f"{path} exists; pass --overwrite to replace it"
    with pytest.raises(OutputExistsError) as info:
        open_sink(path, new)
    assert str(info.value) == message
    with pytest.raises(OutputExistsError):
        check_output(path)
    # a failed overwrite keeps the old output
    with pytest.raises(RuntimeError), open_sink(path, new, overwrite=True) as sink:
        sink.write_rows(0, sample_data(new)[:, :10])
        raise RuntimeError("fail")
    assert read_back(path)["labels"] == ["old"]
    data = sample_data(new)
    write_output(path, new, data, overwrite=True)
    np.testing.assert_array_equal(read_back(path)["data"], data)
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_store_replaces_a_file_of_the_same_name(tmp_path: Path) -> None:
    path = tmp_path / "out.zarr"
    path.write_text("not a store")
    spec = make_spec()
    write_output(path, spec, sample_data(spec), overwrite=True)
    assert path.is_dir() and os.listdir(tmp_path) == ["out.zarr"]


def test_folder_under_a_file_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OutputNotWritableError, match=f"{blocker} is a file, not a folder"):
        check_output(blocker / "2024" / "out.tif")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_folder_is_not_writable(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(OutputNotWritableError, match=f"output folder {folder} is not writable"):
        open_sink(folder / "out.tif", make_spec())


def test_missing_output_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "results" / "2024" / "out.tif"
    spec = make_spec()
    write_output(path, spec, sample_data(spec))
    assert path.is_file()


# --- arguments ------------------------------------------------------------------------------------


def test_format_from_extension_and_override(tmp_path: Path) -> None:
    assert resolve_format("a/B.TIF").value == "gtiff"
    assert resolve_format("b.cog.tiff").value == "cog"
    assert resolve_format("c.zarr").value == "zarr"
    with pytest.raises(InputError, match=r"\.tif, \.tiff, \.zarr|\.cog\.tif.*\.zarr"):
        open_sink(tmp_path / "out.png", make_spec())
    with pytest.raises(InputError, match="--format 'png'"):
        resolve_format("x.tif", "png")
    spec = make_spec()
    write_output(tmp_path / "out.dat", spec, sample_data(spec), format="gtiff")
    with rasterio.open(tmp_path / "out.dat") as dataset:
        assert dataset.driver == "GTiff"


@pytest.mark.parametrize("item", ["COMPRESS", "=DEFLATE", "COMPRESS=", "1X=2", " "])
def test_malformed_creation_option(item: str) -> None:
    with pytest.raises(InputError, match=f"--co {item!r} is not KEY=VALUE"):
        parse_creation_options([item])


def test_creation_options_parse_and_reject_duplicates() -> None:
    assert parse_creation_options(["compress=ZSTD", "ZSTD_LEVEL=9"]) == {
        "COMPRESS": "ZSTD",
        "ZSTD_LEVEL": "9",
    }
    with pytest.raises(InputError, match="COMPRESS is given twice"):
        parse_creation_options(["COMPRESS=ZSTD", "compress=LZW"])


@pytest.mark.parametrize(
    ("fmt", "options", "named"),
    [
        ("gtiff", {"COMPRES": "ZSTD"}, "COMPRES"),
        ("gtiff", {"COMPRESS": "FANCY"}, "FANCY"),
        ("cog", {"BLOCKXSIZE": "64"}, "BLOCKXSIZE"),
    ],
)
def test_options_gdal_rejects_fail_before_any_work(
    tmp_path: Path, fmt: str, options: dict[str, str], named: str
) -> None:
    with pytest.raises(InputError, match=named):
        open_sink(tmp_path / NAMES[fmt], make_spec(creation_options=options))
    assert os.listdir(tmp_path) == []


def test_creation_option_applies(tmp_path: Path) -> None:
    spec = make_spec(creation_options={"COMPRESS": "LZW"})
    write_output(tmp_path / "out.tif", spec, sample_data(spec))
    with rasterio.open(tmp_path / "out.tif") as dataset:
        assert dataset.compression.name == "lzw"


def test_write_rows_contract(tmp_path: Path) -> None:
    spec = make_spec()
    data = sample_data(spec)
    with pytest.raises(ValueError), open_sink(tmp_path / "o.tif", spec) as sink:
        with pytest.raises(ValueError, match="expected row 0, got 5"):
            sink.write_rows(5, data[:, 5:10])
        with pytest.raises(ValueError, match="expected uint8"):
            sink.write_rows(0, data[:, :5].astype(np.float32))
        with pytest.raises(ValueError, match="block"):
            sink.write_rows(0, data[:1, :5])
        sink.write_rows(0, data[:, :95])
        sink.write_rows(95, np.concatenate([data[:, 95:], data[:, :5]], axis=1))
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="inside 'with open_sink"):
        open_sink(tmp_path / "o.tif", spec).write_rows(0, data)


# --- OutputSpec -----------------------------------------------------------------------------------


def test_spec_defaults_and_encoding() -> None:
    mask = make_spec()
    assert (mask.dtype.value, mask.nodata, mask.thresholds()) == ("uint8", 255, [0.4, 0.5])
    prob = np.array([[[0.39, 0.45, 0.6]], [[0.39, 0.45, 0.6]]], dtype=np.float32)
    valid = np.array([[True, True, False]])
    np.testing.assert_array_equal(mask.encode(prob, valid), [[[0, 1, 255]], [[0, 0, 255]]])
    as_uint8 = make_spec(output_type="prob")
    np.testing.assert_array_equal(
        as_uint8.encode(np.ones((2, 1, 2)) * [0.0, 1.0]), [[[0, 254]]] * 2
    )
    as_float = make_spec(output_type="prob", dtype="float32")
    assert math.isnan(as_float.nodata) and as_float.scale is None
    assert math.isnan(as_float.encode(prob, valid)[0, 0, 2])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dtype": "float32"}, "--dtype float32 applies to --output-type prob only"),
        ({"block_size": 500}, "block size 500 px is not a positive multiple of 16"),
        ({"nodata": 1}, "--nodata 1 is not free"),
        ({"output_type": "prob", "nodata": 200}, "--nodata 200 is not free"),
        ({"output_type": "prob", "dtype": "float32", "nodata": 0.5}, "valid probability"),
        ({"prompts": []}, "at least one prompt"),
        ({"prompts": [("a", "x"), ("a", "y")]}, "duplicate prompt id"),
        ({"width": 0}, "width 0"),
        ({"threshold": 1.0}, "--threshold 1.0"),
        ({"tags": {"model": 3}}, "tag model must be text"),
    ],
)
def test_spec_rejects(changes: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        make_spec(**changes)


def test_spec_is_immutable() -> None:
    spec = make_spec(creation_options={"compress": "LZW"})
    assert dict(spec.creation_options) == {"COMPRESS": "LZW"}
    with pytest.raises(TypeError):
        spec.tags["model"] = "other"  # type: ignore[index]
    assert isinstance(spec, OutputSpec) and spec.count == 2
