"""A run killed with SIGKILL mid-training resumes exactly: the same losses, step for step."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from diffris.train import train
from diffris.train.run_folder import read_metrics
from diffris.train.state import load_state
from diffris_cli.train import train as train_command
from tests.train.helpers import quick_launch, small_config, step_losses

FLAGS = ["--dataset", "synthetic", "--preset", "tiny", "--epochs", "3", "--batch-size", "4"]
FLAGS += ["--device-batch", "2", "--image-size", "128", "--lr", "1e-3"]
FLAGS += ["--workers", "0", "--threads", "1", "--save-every", "1"]


def _saved_step(run: Path) -> int:
    try:
        return int(json.loads((run / "state" / "state.json").read_text())["global_step"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def test_sigkill_then_resume_gives_the_uninterrupted_losses(
    synth_root: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    train(small_config(synth_root, epochs=3), reference, launch=quick_launch(save_every=1))
    expected = step_losses(reference)
    assert len(expected) == 12

    run = tmp_path / "killed"
    command = [sys.executable, "-m", "diffris_cli.train", *FLAGS, "--data-root", str(synth_root)]
    child = subprocess.Popen(
        [*command, "-o", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while _saved_step(run) < 2 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_at = _saved_step(run)
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    assert 2 <= killed_at < 12, f"the run was not killed mid-training (state at {killed_at})"
    load_state(run)  # the last state written before the kill is intact

    app = typer.Typer()
    app.command()(train_command)
    result = CliRunner().invoke(app, ["--resume", str(run), "--workers", "0", "--threads", "1"])
    assert result.exit_code == 0, result.output
    resumed = step_losses(run)
    assert resumed == expected  # exact: the whole trajectory, also the steps before the kill
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["type"] == "step"]
    assert steps == list(range(1, 13))  # lines written after the last state were cut on resume
    assert (run / "best" / "model.safetensors").is_file()


def test_resume_refuses_changed_options_and_missing_state(synth_root: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(train_command)
    runner = CliRunner()
    run = tmp_path / "run"
    first = runner.invoke(
        app, [*FLAGS, "--data-root", str(synth_root), "-o", str(run), "--max-steps", "1"]
    )
    assert first.exit_code == 0, first.output
    changed = runner.invoke(app, ["--resume", str(run), "--lr", "0.01"])
    assert changed.exit_code == 1
    assert "--lr 0.01 (saved: 0.001)" in changed.output and "Traceback" not in changed.output
    (run / "state" / "state.json").unlink()
    missing = runner.invoke(app, ["--resume", str(run)])
    assert missing.exit_code == 1
    assert "no training state" in missing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data-root", "{root}", "-o", "{out}"], "exists; pass --resume"),
        (["--data-root", "{empty}", "-o", "{new}"], "no synthetic dataset under"),
        (
            [
                "--data-root",
                "{root}",
                "-o",
                "{new}",
                "--preset",
                "sd15",
                "--pretrained",
                "{nowhere}",
            ],
            "--pretrained {nowhere} does not exist",
        ),
    ],
)
def test_user_errors_are_one_line(
    synth_root: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    places = {
        "root": synth_root,
        "out": tmp_path / "out",
        "new": tmp_path / "new",
        "empty": tmp_path / "empty",
        "nowhere": tmp_path / "nowhere",
    }
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "something").write_text("x")
    (tmp_path / "empty").mkdir()
    app = typer.Typer()
    app.command()(train_command)
    flags = ["--dataset", "synthetic", "--preset", "tiny"]
    result = CliRunner().invoke(app, [*flags, *(a.format(**places) for a in args)])
    assert result.exit_code == 1
    assert message.format(**places) in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    assert not (tmp_path / "new").exists()
