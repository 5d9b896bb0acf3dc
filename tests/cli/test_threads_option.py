"""``--threads`` on segment and evaluate: parsed, and torch runs with it in a real run."""

import json

import pytest
import torch
from typer.testing import CliRunner

from diffris_cli.app import app
from tests.inference.scenes import position_scene

runner = CliRunner()


@pytest.fixture
def threads_restored():
    """The command sets this process's torch threads: put them back for the other tests."""
    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:  # and the OMP/MKL variables it exports
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            patch.setenv(name, "1")
        yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_segment_runs_with_the_threads_asked_for(tmp_path, threads_restored, threads):
    torch.set_num_threads(3 - threads)  # the other count: the command must change it
    scene = position_scene(tmp_path / "scene.tif", 128, 128)
    out = tmp_path / "mask.tif"
    args = ["segment", str(scene), "-t", "the field", "-o", str(out), "--model", "tiny"]
    result = runner.invoke(app, [*args, "--tile", "128", "--threads", str(threads), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scenes"][0]["tiles"] == 1 and out.exists()
    assert torch.get_num_threads() == threads


def test_segment_without_threads_takes_the_default(tmp_path, threads_restored, monkeypatch):
    from diffris.cpu_threads import usable_cpus

    monkeypatch.delenv("OMP_NUM_THREADS")
    torch.set_num_threads(64)  # more than this machine may use: the default lowers it
    scene = position_scene(tmp_path / "scene.tif", 128, 128)
    args = ["segment", str(scene), "-t", "the field", "-o", str(tmp_path / "m.tif")]
    result = runner.invoke(app, [*args, "--model", "tiny", "--tile", "128", "-q"])
    assert result.exit_code == 0, result.output
    assert 1 <= torch.get_num_threads() <= usable_cpus()


@pytest.mark.parametrize("command", ["segment", "evaluate", "archive"])
def test_zero_threads_is_a_usage_error(tmp_path, command):
    args = {
        "segment": ["segment", "a.tif", "-t", "x", "-o", str(tmp_path / "m.tif")],
        "evaluate": ["evaluate", "-d", "synthetic", "--data-root", str(tmp_path)],
        "archive": ["archive", str(tmp_path), "-o", str(tmp_path / "out")],
    }[command]
    result = runner.invoke(app, [*args, "--model", "tiny", "--threads", "0"])
    assert result.exit_code == 2
    assert "--threads" in result.output and "Traceback" not in result.output


def test_evaluate_runs_with_the_threads_asked_for(tmp_path, threads_restored):
    torch.set_num_threads(1)
    root = tmp_path / "synthetic"
    made = runner.invoke(
        app, ["synth", "dataset", str(root), "--samples", "3", "--splits", "1,1,1", "--size", "64"]
    )
    assert made.exit_code == 0, made.output
    args = ["evaluate", "-d", "synthetic", "--data-root", str(root), "--split", "test"]
    result = runner.invoke(
        app, [*args, "--model", "tiny", "--image-size", "64", "--threads", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["samples"] == 1
    assert torch.get_num_threads() == 2
