"""``diffris segment --preview``: checked with the outputs before any work, same --overwrite rule."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image
from typer.testing import CliRunner

from diffris_cli.app import app
from tests.inference.scenes import position_scene

runner = CliRunner()


def _segment(scene: Path, output: Path, preview: str, *extra: str):
    args = ["segment", str(scene), "-t", "the river", "-o", str(output), "--model", "tiny"]
    return runner.invoke(app, [*args, "--tile", "256", "-q", "--preview", preview, *extra])


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def _sys_is_unwritable() -> bool:
    try:
        handle, name = tempfile.mkstemp(dir="/sys")
    except OSError:
        return True
    Path(name).unlink()
    return False


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return position_scene(tmp_path / "scene.tif", 300, 260)


def test_an_existing_preview_is_refused_before_any_work(tmp_path, scene):
    png = tmp_path / "quick.png"
    png.write_bytes(b"keep me")
    line = _one_error_line(_segment(scene, tmp_path / "m.tif", str(png)))
    assert line == f"error: {png} exists; pass --overwrite to replace it"
    assert png.read_bytes() == b"keep me"
    assert not (tmp_path / "m.tif").exists()


def test_overwrite_replaces_the_preview(tmp_path, scene):
    png = tmp_path / "quick.png"
    png.write_bytes(b"old")
    result = _segment(scene, tmp_path / "m.tif", str(png), "--overwrite")
    assert result.exit_code == 0, result.output
    assert Image.open(png).format == "PNG"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("under-a-file", "is a file, not a folder"),
        ("read-only-folder", "is not writable"),
        ("same-as-output", "is also the output"),
        ("not-png", "the quick-look is a PNG"),
    ],
)
def test_a_preview_that_cannot_be_written_is_refused_before_any_work(
    tmp_path, scene, case, expected
):
    output = tmp_path / "m.tif"
    if case == "under-a-file":
        (tmp_path / "notes").write_text("")
        preview = str(tmp_path / "notes" / "quick.png")
    elif case == "read-only-folder":
        if not _sys_is_unwritable():
            pytest.skip("/sys is writable here")
        preview = "/sys/diffris-quick.png"  # sysfs refuses new files, even to root
    elif case == "same-as-output":
        output = tmp_path / "m.png"
        preview = str(output)
    else:
        preview = str(tmp_path / "quick.jpg")
    line = _one_error_line(_segment(scene, output, preview))
    assert expected in line
    before = {"scene.tif", "notes"} if case == "under-a-file" else {"scene.tif"}
    assert {p.name for p in tmp_path.iterdir()} == before  # no mask written


def test_preview_of_float32_zarr_probabilities(tmp_path, scene):
    store, png = tmp_path / "p.zarr", tmp_path / "quick.png"
    extra = ("--output-type", "prob", "--dtype", "float32")
    result = _segment(scene, store, str(png), *extra)
    assert result.exit_code == 0, result.output
    with xr.open_zarr(store) as ds:
        assert ds["prob"].dtype == np.float32
    assert Image.open(png).size[0] >= 300
