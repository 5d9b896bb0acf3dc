"""``diffris segment`` from the command line: real files, the real tiny models."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from diffris.data.prompts import prompts_from_texts
from diffris.inference.predictor import ModelPredictor
from diffris.inference.segment import SegmentOptions, segment_scene
from diffris.models.checkpoint import save_trained
from diffris.models.names import model_identity
from diffris.models.registry import build_model
from diffris_cli.app import app
from tests.inference.scenes import CRS_UTM, TRANSFORM, position_scene

runner = CliRunner()
CPU = torch.device("cpu")


def _one_error_line(result) -> str:
    """The command failed with exactly one error line and no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return position_scene(tmp_path / "scene.tif", 300, 260)


@pytest.fixture(scope="module")
def trained(model_preset, tmp_path_factory):
    """A model of ``model_preset``'s architecture with its own heads (seed 3), saved as a
    trained-model folder; (folder, the model in memory)."""
    model = build_model(model_preset, seed=3).eval()
    return save_trained(model, tmp_path_factory.mktemp("runs") / model_preset), model


@pytest.mark.parametrize("as_folder", [False, True], ids=["preset", "trained-folder"])
def test_segment_writes_a_georeferenced_mask_per_prompt(
    tmp_path, scene, model_preset, as_folder, request
):
    """Either architecture, named by its preset or by a trained folder (found from config.json)."""
    out = tmp_path / "masks.tif"
    model = request.getfixturevalue("trained")[0] if as_folder else model_preset
    texts = ["the river", "the bridge over the river"]
    result = runner.invoke(
        app,
        [
            "segment",
            str(scene),
            "--text",
            texts[0],
            "--text",
            texts[1],
            "-o",
            str(out),
            "--model",
            str(model),
            "--tile",
            "256",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["failed"] == []
    (entry,) = summary["scenes"]
    assert entry["output"] == str(out) and entry["tiles"] == 4 and entry["skipped_tiles"] == 0
    with rasterio.open(out) as written:
        assert written.crs == CRS_UTM and written.transform == TRANSFORM
        assert (written.width, written.height, written.count) == (300, 260, 2)
        assert written.descriptions == tuple(texts)
        assert written.tags()["model"] == model_identity(model)
        masks = written.read()
    assert set(np.unique(masks)) <= {0, 1}
    if as_folder:  # the folder's heads, not the preset's: the in-memory model's masks exactly
        prompts = prompts_from_texts(texts)
        predictor = ModelPredictor(request.getfixturevalue("trained")[1], prompts, device=CPU)
        options = SegmentOptions(tile=256)
        segment_scene(scene, tmp_path / "direct.tif", predictor, prompts, options, model_id="m")
        with rasterio.open(tmp_path / "direct.tif") as direct:
            assert np.array_equal(masks, direct.read())


def test_dry_run_reports_the_grid_and_writes_nothing(tmp_path, scene, model_preset):
    result = runner.invoke(
        app,
        [
            "segment",
            str(scene),
            "-t",
            "x",
            "-o",
            str(tmp_path / "m.tif"),
            "--tile",
            "128",
            "--overlap",
            "32",
            "--model",
            model_preset,
            "--dry-run",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dry_run"] is True and summary["failed"] == []
    (plan,) = summary["scenes"]
    assert (plan["grid_rows"], plan["grid_cols"], plan["tiles"]) == (3, 3, 9)
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize(
    ("extra", "output", "expected"),
    [
        (["--co", "COMPRESS=FOO"], "m.tif", "--co COMPRESS=FOO rejected by GDAL's GTiff driver"),
        ([], "m.jpg", "cannot tell the output format of"),
        (["--threshold", "2"], "m.tif", "--threshold 2.0 is not in (0, 1)"),
        (["--format", "cog", "--co", "BLOCKSIZE=7"], "m.tif", "--co BLOCKSIZE=7 rejected"),
        (["--dtype", "float32"], "m.tif", "float32"),
    ],
)
def test_dry_run_refuses_what_the_run_refuses(tmp_path, scene, extra, output, expected):
    """The dry run runs the run's preflight: the same one error line, exit 1, nothing written."""
    args = ["segment", str(scene), "-t", "x", "-o", str(tmp_path / output), "--model", "tiny"]
    dry = _one_error_line(runner.invoke(app, [*args, *extra, "--dry-run"]))
    real = _one_error_line(runner.invoke(app, [*args, *extra]))
    assert expected in dry and dry == real
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_dry_run_and_run_print_one_json_object_of_the_same_shape(tmp_path, scene):
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_text("not a raster\n")
    args = ["segment", str(scene), str(corrupt), "-t", "x", "-o", str(tmp_path / "out")]
    args += ["--model", "tiny", "--tile", "256", "--json"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    real = runner.invoke(app, args)
    assert dry.exit_code == real.exit_code == 1  # one scene cannot run: both say so
    planned, ran = json.loads(dry.stdout), json.loads(real.stdout)
    assert planned.keys() == ran.keys() == {"dry_run", "scenes", "failed"}
    assert (planned["dry_run"], ran["dry_run"]) == (True, False)
    assert planned["failed"] == ran["failed"] and len(planned["failed"]) == 1
    assert [s["output"] for s in planned["scenes"]] == [s["output"] for s in ran["scenes"]]


def test_several_scenes_continue_past_a_corrupt_one(tmp_path, scene):
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_text("not a raster\n")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "segment",
            str(scene),
            str(corrupt),
            "-t",
            "roofs",
            "-o",
            str(out),
            "--model",
            "tiny",
            "--tile",
            "256",
            "--json",
        ],
    )
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert [Path(s["output"]).name for s in summary["scenes"]] == ["scene.tif"]
    (failure,) = summary["failed"]
    assert failure["scene"] == str(corrupt) and "not a raster" in failure["error"]
    assert sorted(p.name for p in out.iterdir()) == ["scene.tif"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("text_named_tif", "not a raster"),
        ("bad_bands", "--bands"),
        ("bands_out_of_range", "band"),
        ("empty_prompts", "empty"),
        ("malformed_prompts", "line"),
        ("exists", "exists; pass --overwrite"),
        ("unwritable", "cannot"),
        ("no_prompt", "no prompt given"),
        ("bad_tile", "not a multiple of 64"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, scene, case, expected):
    args = ["segment", str(scene), "-t", "roofs", "-o", str(tmp_path / "m.tif"), "--model", "tiny"]
    if case == "missing":
        args[1] = str(tmp_path / "nope.tif")
    elif case == "text_named_tif":
        fake = tmp_path / "fake.tif"
        fake.write_text("hello\n")
        args[1] = str(fake)
    elif case == "bad_bands":
        args += ["--bands", "r,g,b"]
    elif case == "bands_out_of_range":
        args += ["--bands", "5,4,3"]
    elif case == "empty_prompts":
        (tmp_path / "p.yaml").write_text("")
        args = [a for a in args if a not in ("-t", "roofs")] + [
            "--prompts",
            str(tmp_path / "p.yaml"),
        ]
    elif case == "malformed_prompts":
        (tmp_path / "p.yaml").write_text("- id: a\n  text: ok\n- id: [b\n")
        args = [a for a in args if a not in ("-t", "roofs")] + [
            "--prompts",
            str(tmp_path / "p.yaml"),
        ]
    elif case == "exists":
        (tmp_path / "m.tif").write_bytes(b"keep me")
    elif case == "unwritable":
        blocker = tmp_path / "file"
        blocker.write_text("")
        args[args.index("-o") + 1] = str(blocker / "sub" / "m.tif")
    elif case == "no_prompt":
        args = [a for a in args if a not in ("-t", "roofs")]
    elif case == "bad_tile":
        args += ["--tile", "500"]
    line = _one_error_line(runner.invoke(app, args))
    assert expected in line
    if case == "exists":
        assert (tmp_path / "m.tif").read_bytes() == b"keep me"
    else:
        assert not (tmp_path / "m.tif").exists()


def test_a_killed_run_leaves_no_output_and_a_rerun_completes(tmp_path):
    big = position_scene(tmp_path / "big.tif", 1024, 1024)
    out = tmp_path / "masks.tif"
    command = [
        sys.executable,
        "-m",
        "diffris_cli",
        "segment",
        str(big),
        "-t",
        "roofs",
        "-t",
        "water",
        "-o",
        str(out),
        "--model",
        "tiny",
        "--tile",
        "128",
        "--overlap",
        "0",
        "-q",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".masks.tif.partial") for p in tmp_path.iterdir()):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    with rasterio.open(out) as written:
        assert written.count == 2 and written.crs == CRS_UTM


def test_no_model_names_a_demo_preset_of_each_architecture(tmp_path, scene, monkeypatch):
    monkeypatch.delenv("DIFFRIS_MODEL", raising=False)
    args = ["segment", str(scene), "-t", "roofs", "-o", str(tmp_path / "m.tif")]
    line = _one_error_line(runner.invoke(app, args))
    assert "no model given" in line and "--model tiny (DiffRIS) or rsrefseg-tiny" in line
