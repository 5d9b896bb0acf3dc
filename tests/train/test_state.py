"""The resumable state: no pickle, exact optimiser and RNG round trips, crash-safe writes."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from diffris.errors import CheckpointMismatchError, InputNotFoundError
from diffris.train import state as state_io


def _model_and_optimizer(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, k: int) -> None:
    x = torch.linspace(-1, 1, 16).reshape(4, 4) * (k + 1)
    optimizer.zero_grad()
    model(x).pow(2).mean().backward()
    optimizer.step()


def test_optimizer_round_trip_continues_bit_identically(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer()
    for k in range(3):
        _step(model, optimizer, k)
    tensors, plain = state_io.flatten_optimizer(optimizer.state_dict())
    weights = {f"model/{n}": p.detach().clone() for n, p in model.state_dict().items()}
    optimizer_tensors = {f"optimizer/{k}": v for k, v in tensors.items()}
    state_io.save_state(
        tmp_path, {**weights, **optimizer_tensors}, {"global_step": 3, "opt": plain}
    )
    # the files hold no pickle: safetensors + JSON only
    files = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert files[0].startswith("state.json") and files[1].endswith(".safetensors")
    json.loads((tmp_path / "state" / "state.json").read_text())

    loaded, meta = state_io.load_state(tmp_path)
    fresh, fresh_optimizer = _model_and_optimizer(seed=1)
    fresh.load_state_dict(state_io.select(loaded, "model"))
    fresh_optimizer.load_state_dict(
        state_io.unflatten_optimizer(state_io.select(loaded, "optimizer"), meta["opt"])
    )
    assert fresh_optimizer.param_groups[0]["betas"] == (0.9, 0.999)
    for k in range(3, 6):
        _step(model, optimizer, k)
        _step(fresh, fresh_optimizer, k)
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rng_states_round_trip() -> None:
    tensors, plain = state_io.capture_rng(torch.device("cpu"))
    json.dumps(plain)  # JSON-able
    assert all(t.dtype == torch.uint8 for t in tensors.values())
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    state_io.restore_rng(tensors, plain, torch.device("cpu"))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_a_crash_mid_save_leaves_the_previous_state(tmp_path: Path) -> None:
    state_io.save_state(tmp_path, {"a": torch.ones(3)}, {"global_step": 1})
    # a later save killed after writing its tensors but before switching state.json
    (tmp_path / "state" / "tensors-000000002-dead00.safetensors").write_bytes(b"partial")
    (tmp_path / "state" / ".tensors-000000003-beef00.safetensors.tmp").write_bytes(b"x")
    tensors, meta = state_io.load_state(tmp_path)
    assert meta["global_step"] == 1 and torch.equal(tensors["a"], torch.ones(3))
    state_io.save_state(tmp_path, {"a": torch.zeros(3)}, {"global_step": 4})
    names = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert len(names) == 2 and names[1].startswith("tensors-000000004")  # leftovers removed


def test_missing_and_damaged_states_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="holds no training state"):
        state_io.load_state(tmp_path)
    target = state_io.save_state(tmp_path, {"a": torch.ones(3)}, {"global_step": 1})
    target.write_bytes(target.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    with pytest.raises(CheckpointMismatchError, match="the state is damaged"):
        state_io.load_state(tmp_path)
