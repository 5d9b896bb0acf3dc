"""``diffris evaluate`` from the command line on synthetic datasets in the three real layouts."""

from __future__ import annotations

import json
import warnings
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio
import typer
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from typer.testing import CliRunner

from diffris.data.base import open_dataset
from diffris.data.synthetic import write_dataset
from diffris.eval.metrics import iou_counts, resize_mask_nearest
from diffris.eval.predictions import prediction_file, prediction_stems
from diffris_cli import evaluate, synth

runner = CliRunner()
LAYOUTS = ("rrsisd", "refsegrs", "risbench")
#: Images are 128 px and the network input 64 px: the ground truth must be resized.
DATA_SIZE, INPUT_SIZE = 128, 64


def make_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # keep command names in the command line
    app.command(name="evaluate")(evaluate.evaluate_command)
    app.add_typer(synth.app, name="synth")
    return app


def one_error_line(result) -> str:
    """The command failed with exactly one error line and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    """A small synthetic dataset per layout: 4 train, 2 val, 8 test samples of 128 px."""
    base = tmp_path_factory.mktemp("datasets")
    for layout in LAYOUTS:
        write_dataset(
            base / layout, layout=layout, samples=14, splits=(4, 2, 8), size=DATA_SIZE, seed=5
        )
    return {layout: base / layout for layout in LAYOUTS}


def run(*args: str):
    return runner.invoke(make_app(), ["evaluate", *args])


@pytest.mark.parametrize(
    ("layout", "resolution"),
    [("rrsisd", "original"), ("refsegrs", "input"), ("risbench", "original")],
)
def test_each_model_end_to_end_on_each_layout(roots, tmp_path, layout, resolution, model_preset):
    report, scores = tmp_path / "report.html", tmp_path / "scores.json"
    result = run(
        *("--dataset", layout, "--data-root", str(roots[layout]), "--split", "test"),
        *("--model", model_preset, "--image-size", str(INPUT_SIZE), "--device", "cpu"),
        *("--resolution", resolution, "-o", str(scores), "--per-sample"),
        *("--batch-size", "3", "--report", str(report), "--gallery", "2", "-q"),
    )
    assert result.exit_code == 0, result.output
    expected = f"Scored 8 of 8 samples of {layout} test ({model_preset}; {resolution} resolution"
    assert expected in result.stdout
    assert "Pr@0.5" in result.stdout and "mIoU" in result.stdout
    page = report.read_text(encoding="utf-8")
    assert "8 samples scored" in page and page.count('<figure class="card">') == 4
    written = json.loads(scores.read_text())
    assert written["settings"]["model"] == model_preset
    assert written["settings"]["resolution"] == resolution
    side = DATA_SIZE if resolution == "original" else INPUT_SIZE
    samples = written["per_sample"]
    assert len(samples) == 8 and all(0 <= s["I"] <= s["U"] <= side * side for s in samples)
    # the truth alone is at least a few pixels at either size: U counts the resolution's pixels
    assert all(s["U"] > 0 for s in samples)


def _write_predictions(dataset, folder: Path) -> list[tuple[int, int]]:
    """Predictions of four kinds in PNG and TIFF, nested and flat names; returns hand (I, U)."""
    counts = []
    for index in range(len(dataset)):
        sample_id = dataset.meta(index).sample_id
        truth = dataset.sample(index).mask
        truth_in = resize_mask_nearest(truth, INPUT_SIZE)
        kind = index % 4
        if kind == 0:  # the ground truth at the input size: IoU 1
            prediction, path = truth_in, folder / f"{sample_id}.png"
            pixels = prediction.astype(np.uint8) * 255
        elif kind == 1:  # empty: IoU 0
            prediction, path = np.zeros_like(truth_in), folder / prediction_file(sample_id, "test")
            pixels = prediction.astype(np.uint8)
        elif kind == 2:  # at the original size, shifted 5 px: resized like the ground truth
            shifted = np.roll(truth, 5, axis=1)
            prediction = resize_mask_nearest(shifted, INPUT_SIZE)
            path = folder / prediction_file(sample_id, "test", ".tif")
            pixels = shifted.astype(np.uint8)
        else:  # the ground truth plus as many pixels outside it: IoU exactly 0.5
            prediction = truth_in.copy()
            outside = np.flatnonzero(~truth_in)[: int(truth_in.sum())]
            prediction.flat[outside] = True
            path, pixels = folder / f"{sample_id}.png", prediction.astype(np.uint8) * 255
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".tif":
            _write_tiff(path, pixels)
        else:
            Image.fromarray(pixels).save(path)
        counts.append(iou_counts(prediction, truth_in))
    return counts


def _write_tiff(path: Path, pixels: np.ndarray) -> None:
    """A plain (not georeferenced) single-band TIFF."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=pixels.shape[1],
            height=pixels.shape[0],
            count=1,
            dtype=pixels.dtype,
        ) as dst:
            dst.write(pixels[None])


def _percent(value: Fraction) -> float:
    """x100, rounded half-up to two decimals."""
    exact = Decimal(value.numerator * 100) / Decimal(value.denominator)
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _hand_scores(counts: list[tuple[int, int]]) -> dict[str, float]:
    """The protocol written out: IoU = 0 when U = 0, Pr@X with >=, oIoU = sum I / sum U."""
    ious = [Fraction(i, u) if u else Fraction(0) for i, u in counts]
    n = len(ious)
    figures = {
        f"Pr@{x}": _percent(Fraction(sum(v >= Fraction(str(x)) for v in ious), n))
        for x in (0.5, 0.6, 0.7, 0.8, 0.9)
    }
    total_u = sum(u for _, u in counts)
    figures["oIoU"] = _percent(Fraction(sum(i for i, _ in counts), total_u)) if total_u else 0.0
    figures["mIoU"] = _percent(sum(ious, Fraction(0)) / n)
    return {"n": n, **figures}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_predictions_folder_equals_direct_computation(roots, tmp_path, layout):
    dataset = open_dataset(layout, roots[layout], "test")
    counts = _write_predictions(dataset, tmp_path / "preds")
    scores = tmp_path / "scores.json"
    result = run(
        *("-d", layout, "--data-root", str(roots[layout]), "--split", "test"),
        *("--predictions", str(tmp_path / "preds"), "--image-size", str(INPUT_SIZE)),
        *("-o", str(scores), "--per-sample"),
    )
    assert result.exit_code == 0, result.output
    assert "Scored 8 of 8 samples" in result.stdout and f"wrote {scores}" in result.stdout
    written = json.loads(scores.read_text())
    assert {key: written[key] for key in _hand_scores(counts)} == _hand_scores(counts)
    assert written["Pr@0.5"] >= 50.0  # the IoU = 0.5 samples count (>=), with the exact ones
    by_id = {s["sample_id"]: (s["I"], s["U"]) for s in written["per_sample"]}
    ids = [dataset.meta(i).sample_id for i in range(len(dataset))]
    assert by_id == dict(zip(ids, counts, strict=True))
    categories = {dataset.meta(i).category for i in range(len(dataset))} - {None}
    assert set(written.get("per_category", {})) == categories
    for name, part in written.get("per_category", {}).items():
        mine = [c for i, c in enumerate(counts) if dataset.meta(i).category == name]
        assert {key: part[key] for key in _hand_scores(mine)} == _hand_scores(mine)
    assert written["settings"]["predictions"] == str(tmp_path / "preds")
    assert written["settings"]["resolution"] == "input" and written["settings"]["samples"] == 8


def test_json_prints_only_json_and_limit_counts(roots, tmp_path):
    dataset = open_dataset("refsegrs", roots["refsegrs"], "test")
    _write_predictions(dataset, tmp_path)
    result = run(
        *("-d", "refsegrs", "--data-root", str(roots["refsegrs"])),
        *("--predictions", str(tmp_path), "--image-size", str(INPUT_SIZE)),
        *("--resolution", "original", "--limit", "3", "--json"),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 3 and summary["settings"]["limit"] == 3
    assert summary["settings"]["resolution"] == "original"


def test_wrong_data_root_is_one_line(tmp_path):
    result = run("-d", "refsegrs", "--data-root", str(tmp_path / "nope"), "--model", "tiny")
    line = one_error_line(result)
    assert f"RefSegRS not found under {tmp_path / 'nope'}: missing images/" in line


def test_missing_predictions_name_the_first_file_and_the_count(roots, tmp_path):
    dataset = open_dataset("risbench", roots["risbench"], "test")
    _write_predictions(dataset, tmp_path)
    first = dataset.meta(2).sample_id
    for index in (2, 5):
        stems = prediction_stems(dataset.meta(index).sample_id, "test")
        for path in [tmp_path / f"{stem}{suffix}" for stem in stems for suffix in (".png", ".tif")]:
            path.unlink(missing_ok=True)
    result = run(
        "-d", "risbench", "--data-root", str(roots["risbench"]), "--predictions", str(tmp_path)
    )
    line = one_error_line(result)
    assert f"2 of 8 samples have no prediction in {tmp_path}; the first is {first}" in line
    assert str(tmp_path / f"{first}.png") in line


def test_outputs_are_not_clobbered_and_sources_are_exclusive(roots, tmp_path, monkeypatch):
    root = str(roots["rrsisd"])
    report = tmp_path / "report.html"
    report.write_text("keep me")
    line = one_error_line(
        run("-d", "rrsisd", "--data-root", root, "--model", "tiny", "--report", str(report))
    )
    assert f"{report} exists; pass --overwrite" in line and report.read_text() == "keep me"
    line = one_error_line(run("-d", "rrsisd", "--data-root", root))
    assert "pass either --model or --predictions" in line
    both = run(
        "-d", "rrsisd", "--data-root", root, "--model", "tiny", "--predictions", str(tmp_path)
    )
    assert "pass either --model or --predictions" in one_error_line(both)
    line = one_error_line(
        run("-d", "rrsisd", "--data-root", root, "--model", "tiny", "--resolution", "full")
    )
    assert "--resolution 'full' is not one of: input, original" in line
    # A model from $DIFFRIS_MODEL does not clash with --predictions.
    dataset = open_dataset("rrsisd", roots["rrsisd"], "test")
    _write_predictions(dataset, tmp_path / "preds")
    monkeypatch.setenv("DIFFRIS_MODEL", "tiny")
    result = run(
        *("-d", "rrsisd", "--data-root", root, "--predictions", str(tmp_path / "preds")),
        *("--image-size", str(INPUT_SIZE), "--report", str(report), "--overwrite", "-q"),
    )
    assert result.exit_code == 0, result.output
    assert "predictions" in report.read_text(encoding="utf-8")
