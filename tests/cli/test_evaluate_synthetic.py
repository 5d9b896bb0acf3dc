"""``diffris evaluate --dataset synthetic``: a folder from ``diffris synth dataset``, any layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffris_cli.app import app

runner = CliRunner()
LAYOUTS = ("risbench", "refsegrs", "rrsisd")


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    """Tiny synthetic datasets written by ``diffris synth dataset``: 3 test samples of 64 px."""
    base = tmp_path_factory.mktemp("synthetic")
    for layout in LAYOUTS:
        args = ["synth", "dataset", str(base / layout), "--format", layout, "--samples", "7"]
        result = runner.invoke(app, [*args, "--splits", "2,2,3", "--size", "64", "--seed", "2"])
        assert result.exit_code == 0, result.output
    return {layout: base / layout for layout in LAYOUTS}


def scores(root: Path, dataset: str, *extra: str) -> dict:
    result = runner.invoke(
        app,
        [
            *("evaluate", "--dataset", dataset, "--data-root", str(root), "--split", "test"),
            *("--model", "tiny", "--limit", "2", "--image-size", "64", "--device", "cpu"),
            *("--json", *extra),
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_synthetic_is_scored_with_its_layouts_loader(roots, layout):
    synthetic = scores(roots[layout], "synthetic")
    assert synthetic["settings"]["dataset"] == "synthetic"
    assert synthetic["settings"]["layout"] == layout
    assert synthetic["settings"]["samples"] == 2 and synthetic["settings"]["split_samples"] == 3
    named = scores(roots[layout], layout)
    assert named["settings"]["dataset"] == layout and "layout" not in named["settings"]
    assert {k: v for k, v in synthetic.items() if k != "settings"} == {
        k: v for k, v in named.items() if k != "settings"
    }


def test_synthetic_report_names_the_synthetic_dataset(roots, tmp_path):
    report = tmp_path / "r.html"
    scores(roots["risbench"], "synthetic", "--report", str(report), "--gallery", "1")
    assert "synthetic (RISBench layout) test: tiny" in report.read_text()


def test_a_folder_without_a_synthetic_layout_is_one_line(tmp_path):
    args = ["evaluate", "-d", "synthetic", "--data-root", str(tmp_path), "--model", "tiny"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: no synthetic dataset under {tmp_path}")
