"""Training in one process: the run folder, a frozen backbone, exact gradient accumulation,
latent caching, and a NaN stop; the tests every architecture must pass run for each tiny preset."""

import importlib.metadata
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffris.errors import TrainingDivergedError
from diffris.models.checkpoint import read_metadata
from diffris.models.diffris.tiny import TINY_LATENT_CHANNELS
from diffris.models.interface import ReferringModel
from diffris.models.loading import load_model
from diffris.models.registry import build_model, image_features_frozen
from diffris.train import Ablation, EpochEvent, StepEvent, train
from diffris.train import state as state_io
from diffris.train.run_folder import RunFolder, read_config, read_metrics
from diffris.train.schedule import WarmupCosineSchedule
from tests.train.helpers import TRAIN_PRESETS, quick_launch, small_config, step_losses


def _frozen_tensors(model: ReferringModel) -> dict[str, torch.Tensor]:
    """Every tensor of ``model`` that a trained folder does not store (nor shares storage with
    one it stores, as SAM's positional table tied to its prompt encoder's)."""
    trainable = model.trainable_state_dict()
    shared = {t.untyped_storage().data_ptr() for t in trainable.values()}
    return {
        name: t
        for name, t in model.state_dict().items()
        if name not in trainable and t.untyped_storage().data_ptr() not in shared
    }


@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_run_folder_holds_config_metrics_models_and_state(
    synth_root: Path, tmp_path: Path, preset: str
) -> None:
    config = small_config(synth_root, preset)
    events: list[object] = []
    result = train(config, tmp_path / "run", launch=quick_launch(), on_event=events.append)
    run = RunFolder(tmp_path / "run")
    assert result.finished and result.steps == 8 and result.epochs == 2
    assert read_config(run) == config  # everything needed to reproduce the run

    records = read_metrics(run.metrics)
    steps = [r for r in records if r["type"] == "step"]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert all(r["lr"] <= 1e-3 and r["samples_per_s"] > 0 for r in steps)
    assert steps[0]["lr"] == 1e-3 and steps[-1]["lr"] < steps[1]["lr"]  # poly decay
    assert [r["epoch"] for r in epochs] == [1, 2] and epochs[0]["val"]["n"] == 4
    assert sum(isinstance(e, StepEvent) for e in events) == 8
    assert sum(isinstance(e, EpochEvent) for e in events) == 2

    # the best epoch is the one with the highest validation oIoU (the first on ties)
    best_epoch = max(epochs, key=lambda r: (r["val"]["oIoU"], -r["epoch"]))["epoch"]
    assert result.best is not None and result.best["epoch"] == best_epoch
    best_meta = json.loads((run.best / "metadata.json").read_text())
    assert best_meta["training"]["epoch"] == best_epoch
    assert best_meta["metrics"]["oIoU"] == result.best["scores"]["oIoU"]

    # only the trainable parts changed: the loaded model's frozen tensors are the preset's own
    last = load_model(run.last)
    fresh = build_model(preset, seed=config.seed)
    assert last.architecture == fresh.architecture
    frozen, untouched = _frozen_tensors(last), _frozen_tensors(fresh)
    assert frozen.keys() == untouched.keys() and len(frozen) > 0
    for name, tensor in frozen.items():
        assert torch.equal(tensor, untouched[name]), name
    changed = [
        name
        for (name, a), (_, b) in zip(
            last.named_trainable_parameters(), fresh.named_trainable_parameters(), strict=True
        )
        if not torch.equal(a, b)
    ]
    assert len(changed) > 0.9 * len(list(fresh.named_trainable_parameters()))
    # the folder's metadata counts the parameters and names the versions they were made with
    meta = read_metadata(run.last)
    assert meta["parameters"] == {
        "trainable": fresh.trainable_parameter_count(),
        "frozen": fresh.frozen_parameter_count(),
    }
    assert {"diffris", "torch", "transformers", "peft", "safetensors"} <= meta["versions"].keys()
    assert meta["versions"]["peft"] == importlib.metadata.version("peft")
    tensors, meta = state_io.load_state(run.root)
    assert (meta["epoch"], meta["step_in_epoch"], meta["global_step"]) == (2, 0, 8)
    assert any(name.startswith("optimizer/") for name in tensors)
    assert tensors["rng/0/cpu"].dtype == torch.uint8


def test_gradient_accumulation_equals_one_big_batch(synth_root: Path, tmp_path: Path) -> None:
    # soft assignment: no Gumbel noise, whose draws depend on the micro-batch composition
    soft = Ablation(hard_assignment=False)
    common = {"epochs": 1, "val_split": "", "ablation": soft}
    train(
        small_config(synth_root, device_batch=4, **common), tmp_path / "big", launch=quick_launch()
    )
    train(
        small_config(synth_root, device_batch=1, **common), tmp_path / "acc", launch=quick_launch()
    )
    big, accumulated = step_losses(tmp_path / "big"), step_losses(tmp_path / "acc")
    assert big.keys() == accumulated.keys() == {1, 2, 3, 4}
    for step in big:
        assert accumulated[step] == pytest.approx(big[step], rel=1e-5)
    # Adam turns rounding-level gradient differences of near-zero gradients into visible
    # parameter differences; 3e-4 is well below one step's update (lr 1e-3) but far above them
    a = load_file(tmp_path / "big" / "last" / "model.safetensors")
    b = load_file(tmp_path / "acc" / "last" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=3e-4)


@pytest.mark.parametrize(("preset", "frozen"), [("tiny", True), ("rsrefseg-tiny", False)])
def test_the_registry_knows_whose_image_features_can_be_cached(preset: str, frozen: bool) -> None:
    # what launch checks --cache-latents against, before any model is built
    assert image_features_frozen(preset) is frozen
    assert build_model(preset, seed=0).image_features_frozen is frozen


def test_cached_latents_give_the_same_losses(synth_root: Path, tmp_path: Path) -> None:
    common = {"epochs": 1, "val_split": ""}
    train(small_config(synth_root, **common), tmp_path / "plain", launch=quick_launch())
    train(
        small_config(synth_root, cache_latents=True, **common),
        tmp_path / "cached",
        launch=quick_launch(),
    )
    plain, cached = step_losses(tmp_path / "plain"), step_losses(tmp_path / "cached")
    assert plain.keys() == cached.keys() and len(plain) == 4
    for step in plain:
        assert cached[step] == pytest.approx(plain[step], rel=1e-5)
    stored = load_file(tmp_path / "cached" / "latents.safetensors")["latents"]
    # one latent per training image, 16² at 128² px
    assert stored.shape == (16, TINY_LATENT_CHANNELS, 16, 16)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_every_run_file_is_as_readable_as_the_umask_says(
    synth_root: Path, tmp_path: Path, set_umask: Callable[[int], int]
) -> None:
    # models, training state and latent cache are safetensors, which writes 0600 by itself;
    # a team's shared runs/ folder must be readable by the group like config.yaml is
    set_umask(0o027)
    run = tmp_path / "run"
    train(small_config(synth_root, epochs=1, cache_latents=True), run, launch=quick_launch())
    modes = {
        str(p.relative_to(run)): p.stat().st_mode & 0o777 for p in run.rglob("*") if p.is_file()
    }
    assert {"latents.safetensors", "best/model.safetensors", "last/model.safetensors"} <= set(modes)
    assert any(name.startswith("state/tensors-") for name in modes)
    assert modes == dict.fromkeys(modes, 0o640)


@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_state(
    synth_root: Path, tmp_path: Path, preset: str
) -> None:
    config = small_config(synth_root, preset, lr=1e30, epochs=1)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step \d+ .*--lr"):
        train(config, tmp_path / "run", launch=quick_launch())
    tensors, meta = state_io.load_state(tmp_path / "run")
    assert meta["global_step"] >= 1
    assert all(torch.isfinite(t).all() for n, t in tensors.items() if n.startswith("model/"))


def test_the_configs_schedule_and_selection_score_steer_the_run(
    synth_root: Path, tmp_path: Path
) -> None:
    config = small_config(
        synth_root, epochs=3, schedule="warmup-cosine", warmup_epochs=1, select_by="mIoU"
    )
    result = train(config, tmp_path / "run", launch=quick_launch())
    records = read_metrics(RunFolder(tmp_path / "run").metrics)
    lrs = {r["step"]: r["lr"] for r in records if r["type"] == "step"}
    schedule = WarmupCosineSchedule(1e-3, total_steps=12, warmup_steps=4)
    assert lrs == {step: schedule.lr(step - 1) for step in range(1, 13)}
    assert lrs[1] == pytest.approx(1e-5) and lrs[5] == pytest.approx(1e-3)  # warm-up, then peak
    epochs = [r for r in records if r["type"] == "epoch"]
    best_epoch = max(epochs, key=lambda r: (r["val"]["mIoU"], -r["epoch"]))["epoch"]
    assert result.best is not None and result.best["epoch"] == best_epoch
    assert read_config(RunFolder(tmp_path / "run")).select_by.value == "mIoU"
