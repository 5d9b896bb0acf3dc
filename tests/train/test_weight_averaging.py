"""Stochastic weight averaging (``--average-from``): validation and the model folders hold the
mean of the epoch-end weights, training's own trajectory is the one without averaging, and a run
stopped mid-average resumes to the same folders bit for bit."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffris.errors import InputError
from diffris.models.checkpoint import read_metadata
from diffris.train import EpochEvent, train
from diffris.train import state as state_io
from diffris.train.run_folder import read_metrics
from diffris_cli.train_progress import _epoch_line
from tests.train.helpers import TRAIN_PRESETS, quick_launch, small_config, step_losses

STEPS_PER_EPOCH = 4  # 16 training samples, global batch 4


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _epochs(run: Path) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["type"] == "epoch"]


@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_the_saved_model_is_the_mean_of_the_epoch_ends_and_training_is_unchanged(
    synth_root: Path, tmp_path: Path, preset: str
) -> None:
    plain = small_config(synth_root, preset, epochs=3)
    # the plain run stopped at every epoch end: its weights there
    ends = []
    for epoch in (1, 2, 3):
        launch = quick_launch(max_steps=epoch * STEPS_PER_EPOCH)
        train(plain if epoch == 1 else None, tmp_path / "plain", launch=launch, resume=epoch > 1)
        ends.append(_weights(tmp_path / "plain" / "last"))

    run = tmp_path / "averaged"
    train(plain.replace(average_from=2), run, launch=quick_launch())
    assert step_losses(run) == step_losses(tmp_path / "plain")  # the same trajectory, exactly
    saved = _weights(run / "last")
    assert saved.keys() == ends[2].keys()
    floating = [name for name, t in saved.items() if t.is_floating_point()]
    for name in floating:
        torch.testing.assert_close(saved[name], (ends[1][name] + ends[2][name]) / 2)
    assert any(not torch.equal(saved[name], ends[2][name]) for name in floating)
    # ...while the resumable state holds the weights training goes on from
    tensors, meta = state_io.load_state(run)
    own = state_io.select(tensors, "model")
    assert all(torch.equal(own[name], ends[2][name]) for name in ends[2])
    assert meta["average"] == {"first_epoch": 2, "count": 2}

    # epoch 1 validated the trained weights, epoch 2 the mean of one (the same), 3 the mean
    records, plain_records = _epochs(run), _epochs(tmp_path / "plain")
    assert [r["averaged_epochs"] for r in records] == [None, [2, 2], [2, 3]]
    assert [r["val"] for r in records[:2]] == [r["val"] for r in plain_records[:2]]
    assert read_metadata(run / "last")["training"]["averaged_epochs"] == [2, 3]
    best = max(records, key=lambda r: (r["val"]["oIoU"], -r["epoch"]))
    best_meta = read_metadata(run / "best")["training"]
    assert (best_meta["epoch"], best_meta["averaged_epochs"]) == (
        best["epoch"],
        best["averaged_epochs"],
    )


def test_a_run_stopped_mid_average_resumes_to_the_same_folders(
    synth_root: Path, tmp_path: Path
) -> None:
    config = small_config(synth_root, epochs=3, average_from=1)
    reference = tmp_path / "reference"
    train(config, reference, launch=quick_launch())

    run = tmp_path / "stopped"
    train(config, run, launch=quick_launch(max_steps=2 * STEPS_PER_EPOCH + 1))
    assert state_io.load_state(run)[1]["average"]["count"] == 2
    train(None, run, launch=quick_launch(), resume=True)
    for folder in ("last", "best"):
        expected, resumed = _weights(reference / folder), _weights(run / folder)
        assert resumed.keys() == expected.keys()
        assert all(torch.equal(resumed[name], expected[name]) for name in expected), folder
    assert _epochs(run) == _epochs(reference)


@pytest.mark.parametrize("average_from", [0, 4])
def test_an_average_start_outside_the_run_is_refused(synth_root: Path, average_from: int) -> None:
    with pytest.raises(InputError, match=rf"--average-from {average_from} .* give 1 to 3"):
        small_config(synth_root, epochs=3, average_from=average_from)


def test_the_progress_line_names_the_averaged_epochs() -> None:
    event = EpochEvent(
        epoch=5,
        epochs=5,
        step=20,
        train_loss=0.5,
        val=None,
        best_epoch=None,
        averaged_epochs=(3, 5),
    )
    assert _epoch_line(event).endswith("; weights: mean of epochs 3-5")
