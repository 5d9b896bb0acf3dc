"""``diffris segment -o X.zarr``: an existing store is one output, refused or replaced whole."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
from typer.testing import CliRunner

from diffris_cli.app import app
from tests.inference.scenes import position_scene

runner = CliRunner()


def _segment(scene: Path, output: str, *extra: str, text: str = "the river"):
    args = ["segment", str(scene), "-t", text, "-o", output, "--model", "tiny", "--tile", "256"]
    return runner.invoke(app, [*args, "-q", *extra])


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _prompt_texts(store: Path) -> list[str]:
    with xr.open_zarr(store) as ds:
        return list(ds.prompt_text.values)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return position_scene(tmp_path / "scene.tif", 300, 260)


@pytest.mark.parametrize(
    ("name", "extra"),
    [("old.zarr", ()), ("old.zarr/", ()), ("store", ("--format", "zarr"))],
    ids=["store", "trailing-slash", "store-without-extension"],
)
def test_an_existing_store_is_refused_without_overwrite(tmp_path, scene, name, extra):
    store = tmp_path / name.rstrip("/")
    assert _segment(scene, str(store), *extra).exit_code == 0
    before = _tree(tmp_path)
    line = _one_error_line(_segment(scene, str(tmp_path / name), *extra, text="the road"))
    assert line == f"error: {store} exists; pass --overwrite to replace it"
    assert _tree(tmp_path) == before  # nothing written inside the store or beside it
    assert _prompt_texts(store) == ["the river"]


def test_overwrite_replaces_the_store_whole(tmp_path, scene):
    store = tmp_path / "masks.zarr"
    assert _segment(scene, str(store)).exit_code == 0
    before = _tree(tmp_path)
    result = _segment(scene, f"{store}/", "--overwrite", text="the road")
    assert result.exit_code == 0, result.output
    assert _tree(tmp_path) == before  # the same layout: no output written inside the old store
    assert _prompt_texts(store) == ["the road"]


def test_several_scenes_into_one_store_are_refused(tmp_path, scene):
    store = tmp_path / "masks.zarr"
    assert _segment(scene, str(store)).exit_code == 0
    before = _tree(tmp_path)
    other = position_scene(tmp_path / "other.tif", 300, 260)
    args = ["segment", str(scene), str(other), "-t", "x", "-o", str(store), "--model", "tiny"]
    line = _one_error_line(runner.invoke(app, args))
    assert "is a Zarr store but 2 scenes were given" in line and "-o masks/" in line
    assert _tree(tmp_path) == sorted([*before, "other.tif"])


def test_a_killed_overwrite_keeps_the_old_store(tmp_path, scene):
    store = tmp_path / "masks.zarr"
    assert _segment(scene, str(store)).exit_code == 0
    before = _tree(store)
    big = position_scene(tmp_path / "big.tif", 1024, 1024)
    command = [sys.executable, "-m", "diffris_cli", "segment", str(big), "-t", "the road"]
    command += ["-o", str(store), "--overwrite", "--model", "tiny", "--tile", "128", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".masks.zarr.partial") for p in tmp_path.iterdir()):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert _tree(store) == before
    assert _prompt_texts(store) == ["the river"]
    with xr.open_zarr(store) as ds:
        assert ds["mask"].shape == (1, 260, 300)
