"""Two CPU processes (gloo, DDP) train the same model as one process with the same global batch."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffris.models.registry import image_features_frozen
from diffris.train import state as state_io
from diffris.train import train
from tests.train.helpers import TRAIN_PRESETS, quick_launch, small_config, step_losses


@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_two_processes_match_one_process(synth_root: Path, tmp_path: Path, preset: str) -> None:
    # Same global batch (4) and micro-batch (2): one process accumulates two micro-batches, two
    # processes run one each. The randomness (DiffRIS's Gumbel noise, RSRefSeg's LoRA dropout)
    # is seeded per chunk of samples, so it is the same. Both average the weights from epoch 1
    # (--average-from): every rank keeps its own mean and validates its shard with it.
    one = train(
        small_config(synth_root, preset, average_from=1), tmp_path / "one", launch=quick_launch()
    )
    # the two-process run also builds its latent cache sharded over both processes, where the
    # image features are frozen (RSRefSeg's LoRA encoders run inside the DDP-wrapped heads)
    cache = image_features_frozen(preset)
    two = train(
        small_config(synth_root, preset, cache_latents=cache, average_from=1),
        tmp_path / "two",
        launch=quick_launch(procs=2),
    )
    assert one.steps == two.steps == 8
    losses_one, losses_two = step_losses(tmp_path / "one"), step_losses(tmp_path / "two")
    assert losses_one.keys() == losses_two.keys()
    # Bit-identical, not just close: the gradient of each chunk is the same tensor in both runs,
    # and g0/4 + g1/4 (accumulated) equals (g0/2 + g1/2) / 2 (DDP's average) exactly in floating
    # point, since every factor is a power of two and a sum of two terms is commutative.
    assert losses_two == losses_one
    a = load_file(tmp_path / "one" / "last" / "model.safetensors")
    b = load_file(tmp_path / "two" / "last" / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    own_one = state_io.select(state_io.load_state(tmp_path / "one")[0], "model")
    own_two = state_io.select(state_io.load_state(tmp_path / "two")[0], "model")
    assert all(torch.equal(own_one[name], own_two[name]) for name in own_one)
    assert any(not torch.equal(a[name], own_one[name]) for name in a)  # last/ is the mean
    # validation is sharded over the ranks and merged: every sample scored once
    assert one.best is not None and two.best is not None
    assert two.best["scores"]["n"] == one.best["scores"]["n"] == 4
    assert two.best["scores"]["oIoU"] == pytest.approx(one.best["scores"]["oIoU"], abs=1.0)
    assert (tmp_path / "two" / "latents.safetensors").is_file() == cache
