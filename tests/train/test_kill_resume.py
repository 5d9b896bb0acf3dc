"""A run killed with SIGKILL mid-training resumes exactly: the same losses, step for step."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import typer
from safetensors.torch import load_file
from typer.testing import CliRunner

from diffris.train import train
from diffris.train.run_folder import RunFolder, read_launch, read_metrics
from diffris.train.state import has_state, load_state
from diffris_cli.train import train as train_command
from tests.train.helpers import (
    TRAIN_PRESETS,
    config_flags,
    quick_launch,
    small_config,
    step_losses,
)

FLAGS = ["--dataset", "synthetic", "--preset", "tiny", "--epochs", "3", "--batch-size", "4"]
FLAGS += ["--device-batch", "2", "--image-size", "128", "--lr", "1e-3"]
FLAGS += ["--workers", "0", "--threads", "1", "--save-every", "1"]


def _saved_step(run: Path) -> int:
    try:
        return int(json.loads((run / "state" / "state.json").read_text())["global_step"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_sigkill_then_resume_gives_the_uninterrupted_losses(
    synth_root: Path, tmp_path: Path, preset: str
) -> None:
    config = small_config(synth_root, preset)  # 2 epochs of 4 steps
    reference = tmp_path / "reference"
    train(config, reference, launch=quick_launch(save_every=1))
    expected = step_losses(reference)
    assert len(expected) == 8

    run = tmp_path / "killed"
    child = _start(config_flags(config, tmp_path), run)
    _kill_when(child, lambda: _saved_step(run) >= 2)
    killed_at = _saved_step(run)
    assert 2 <= killed_at < 8, f"the run was not killed mid-training (state at {killed_at})"
    load_state(run)  # the last state written before the kill is intact

    app = typer.Typer()
    app.command()(train_command)
    result = CliRunner().invoke(app, ["--resume", str(run), "--workers", "0", "--threads", "1"])
    assert result.exit_code == 0, result.output
    resumed = step_losses(run)
    assert resumed == expected  # exact: the whole trajectory, also the steps before the kill
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["type"] == "step"]
    assert steps == list(range(1, 9))  # lines written after the last state were cut on resume
    assert (run / "best" / "model.safetensors").is_file()
    final = load_file(run / "last" / "model.safetensors")
    uninterrupted = load_file(reference / "last" / "model.safetensors")
    assert final.keys() == uninterrupted.keys()
    assert all(torch.equal(final[name], uninterrupted[name]) for name in uninterrupted)


def test_resume_refuses_changed_options_and_a_missing_config(
    synth_root: Path, tmp_path: Path
) -> None:
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
    (run / "config.yaml").unlink()
    missing = runner.invoke(app, ["--resume", str(run)])
    assert missing.exit_code == 1
    assert "not a diffris run folder" in missing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data-root", "{root}", "-o", "{out}"], "is not a diffris run folder"),
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
        (
            ["--data-root", "{root}", "-o", "{new}", "--epochs", "3", "--average-from", "4"],
            "--average-from 4 is not an epoch of this 3-epoch run; give 1 to 3",
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


def _start(flags: list[str], run: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "diffris_cli.train", *flags, "-o", str(run)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(child: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not ready() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]  # type: ignore[union-attr]


def test_a_run_killed_before_its_first_save_resumes_from_step_0(
    synth_root: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    config = small_config(synth_root, epochs=2)
    train(config, reference, launch=quick_launch(save_every=0))

    run = tmp_path / "killed"
    flags = [*FLAGS, "--data-root", str(synth_root), "--epochs", "2", "--save-every", "0"]
    child = _start(flags, run)
    _kill_when(child, (run / "config.yaml").is_file)
    assert (run / "config.yaml").is_file() and not has_state(run)  # killed before any save

    app = typer.Typer()
    app.command()(train_command)
    result = CliRunner().invoke(app, ["--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert step_losses(run) == step_losses(reference)
    final = load_file(run / "last" / "model.safetensors")
    expected = load_file(reference / "last" / "model.safetensors")
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[name], expected[name]) for name in expected)


def test_resume_alone_restores_the_launch_options_that_change_numbers(
    synth_root: Path, tmp_path: Path
) -> None:
    # 2 threads change the CPU kernels' summation order (losses differ in the last bit), and
    # the resumed process would otherwise get this process' default of 1 (OMP_NUM_THREADS=1).
    options = {"threads": 2, "workers": 1, "save_every": 2}
    reference = tmp_path / "reference"
    threads = torch.get_num_threads()
    try:
        train(small_config(synth_root, epochs=3), reference, launch=quick_launch(**options))
    finally:
        torch.set_num_threads(threads)
    expected = step_losses(reference)

    run = tmp_path / "killed"
    flags = [*FLAGS, "--data-root", str(synth_root)]
    flags += ["--threads", "2", "--workers", "1", "--save-every", "2"]
    child = _start(flags, run)
    _kill_when(child, lambda: _saved_step(run) >= 2)
    assert 2 <= _saved_step(run) < 12, f"not killed mid-training (state at {_saved_step(run)})"

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    resumed = subprocess.run(
        [sys.executable, "-m", "diffris_cli.train", "--resume", str(run)],
        capture_output=True,
        env=env,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert step_losses(run) == expected  # exact, step for step


def test_resume_with_another_thread_count_warns_and_config_yaml_keeps_the_original(
    synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        train(small_config(synth_root), run, launch=quick_launch(max_steps=1))
        with caplog.at_level(logging.WARNING, logger="diffris"):
            train(None, run, launch=quick_launch(threads=2, max_steps=2), resume=True)
    finally:
        torch.set_num_threads(threads)
    assert "--threads 2 (saved: 1)" in caplog.text and "last bits" in caplog.text
    assert read_launch(RunFolder(run))[0].threads == 1
    assert step_losses(run).keys() == {1, 2}
