"""``diffris synth dataset`` and ``diffris synth scene`` from the command line."""

from __future__ import annotations

import json

import pytest
import rasterio
import typer
import yaml
from typer.testing import CliRunner

from diffris.data.base import open_dataset
from diffris.data.prompts import load_prompts
from diffris_cli import synth

runner = CliRunner()


def make_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.add_typer(synth.app, name="synth")
    return app


def run(*args: str):
    return runner.invoke(make_app(), ["synth", *args])


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("layout", ["risbench", "refsegrs", "rrsisd"])
def test_dataset_is_read_by_its_loader(tmp_path, layout):
    out = tmp_path / "data"
    result = run(
        *("dataset", str(out), "--format", layout, "--samples", "12", "--size", "64"),
        *("--splits", "6,3,3", "--seed", "2", "--json"),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["samples"] == {"train": 6, "val": 3, "test": 3}
    assert summary["format"] == layout and summary["root"] == str(out)
    for split, count in summary["samples"].items():
        dataset = open_dataset(layout, out, split)
        assert len(dataset) == count
        assert dataset.sample(0).image.shape == (64, 64, 3)


def test_dataset_is_deterministic_and_refuses_to_clobber(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        result = run("dataset", str(out), "--samples", "6", "--size", "64", "--seed", "7")
        assert result.exit_code == 0, result.output
        assert "6 samples in" in result.stdout and "train" in result.stdout
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files and all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    line = one_error_line(run("dataset", str(first), "--samples", "6", "--size", "64"))
    assert f"{first} exists and is not empty; pass --overwrite" in line
    again = run("dataset", str(first), "--samples", "6", "--size", "64", "--overwrite")
    assert again.exit_code == 0, again.output


def test_dataset_bad_values_are_one_line(tmp_path):
    line = one_error_line(run("dataset", str(tmp_path / "x"), "--format", "coco"))
    assert "--format 'coco' is not one of: risbench, refsegrs, rrsisd" in line
    line = one_error_line(run("dataset", str(tmp_path / "x"), "--samples", "10", "--splits", "5,5"))
    assert "--splits '5,5' has 2 values; give 3" in line
    line = one_error_line(
        run("dataset", str(tmp_path / "x"), "--samples", "10", "--splits", "5,3,3")
    )
    assert "add up to 11, not 10" in line
    usage = run("dataset", str(tmp_path / "x"), "--samples", "0")
    assert usage.exit_code == 2


def test_scene_writes_raster_prompts_and_masks(tmp_path):
    scene, prompts, masks = tmp_path / "scene.tif", tmp_path / "prompts.yaml", tmp_path / "masks"
    result = run(
        *("scene", str(scene), "--size", "300,420", "--seed", "1", "--nodata-border", "16"),
        *("--prompts-out", str(prompts), "--masks-out", str(masks), "--crs", "EPSG:32631"),
        *("--pixel-size", "2", "--origin", "400000,6000000", "--no-overviews", "--json"),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    with rasterio.open(scene) as written:
        assert (written.height, written.width, written.count) == (300, 420, 3)
        assert written.crs.to_epsg() == 32631
        assert written.transform.a == 2 and (written.transform.c, written.transform.f) == (
            400000,
            6000000,
        )
        assert written.overviews(1) == []
    listed = load_prompts(prompts)
    assert [p.text for p in listed] == [p["text"] for p in summary["prompts"]]
    assert yaml.safe_load(prompts.read_text())[0]["id"] == summary["prompts"][0]["id"]
    for entry in summary["prompts"]:
        with rasterio.open(entry["mask"]) as mask:
            assert int(mask.read(1).sum()) == entry["pixels"]


def test_scene_prompts_and_refusals(tmp_path):
    scene = tmp_path / "scene.tif"
    result = run(
        *("scene", str(scene), "--size", "256", "-t", "the roads", "-t", "the red roofs"),
    )
    assert result.exit_code == 0, result.output
    assert "the roads" in result.stdout and "the red roofs" in result.stdout
    line = one_error_line(run("scene", str(scene), "--size", "256"))
    assert f"{scene} exists; pass --overwrite to replace it" in line
    line = one_error_line(run("scene", str(tmp_path / "s.png"), "--size", "256"))
    assert "is not a .tif path" in line
    line = one_error_line(
        run("scene", str(tmp_path / "t.tif"), "--size", "256", "-t", "the largest roof")
    )
    assert "scene prompts name a category" in line
    line = one_error_line(run("scene", str(tmp_path / "t.tif"), "--size", "1,2,3"))
    assert "--size '1,2,3' has 3 values; give 1 or 2" in line
    assert not (tmp_path / "t.tif").exists()
