"""Shared pieces of the training tests: a small synthetic dataset and a fast tiny-model recipe
for each architecture."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from diffris.data.synthetic import write_dataset
from diffris.train import LaunchOptions, TrainConfig
from diffris.train.run_folder import read_metrics

#: 16 training, 4 validation, 4 test samples of 128² px: a few seconds per epoch on one thread.
SPLITS = (16, 4, 4)
SIZE = 128
#: The tiny preset of each architecture, for tests that every architecture must pass.
TRAIN_PRESETS = ("tiny", "rsrefseg-tiny")
#: Network input per preset: rsrefseg-tiny resizes every tile to SAM's 1024² inside, so its
#: cost hardly depends on this; 64² keeps its losses, masks and validation small.
TEST_SIZES = {"tiny": SIZE, "rsrefseg-tiny": 64}
#: One recipe for every architecture's test runs (DiffRIS's: poly decay, BCE + Dice, best by
#: oIoU), given explicitly so that an architecture's own defaults do not change what the tests
#: assert; fields this TrainConfig lacks are left out.
PINNED_RECIPE: dict[str, Any] = {
    "weight_decay": 0.01,
    "bce_weight": 1.0,
    "dice_weight": 1.0,
    "schedule": "poly",
    "warmup_epochs": 0.0,
    "select_by": "oIoU",
}


def write_small_dataset(root: Path, *, layout: str = "risbench", seed: int = 0) -> Path:
    """A synthetic dataset in ``layout`` under ``root`` (seeded: byte-identical every time)."""
    write_dataset(root, layout=layout, samples=sum(SPLITS), splits=SPLITS, size=SIZE, seed=seed)
    return root


def small_config(root: Path, preset: str = "tiny", **changes: Any) -> TrainConfig:
    """A tiny preset at its :data:`TEST_SIZES` input, global batch 4 in micro-batches of 2,
    2 epochs, lr 1e-3, the :data:`PINNED_RECIPE`."""
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {
        "dataset": "synthetic",
        "data_root": str(root),
        "preset": preset,
        "epochs": 2,
        "batch_size": 4,
        "device_batch": 2,
        "image_size": TEST_SIZES[preset],
        "lr": 1e-3,
        **{name: value for name, value in PINNED_RECIPE.items() if name in known},
        **changes,
    }
    return TrainConfig(**values)


def config_flags(config: TrainConfig, folder: Path) -> list[str]:
    """``diffris train`` flags that train exactly ``config``: ``--config`` with it written to a
    YAML file in ``folder``, and in-process loading on one thread, state saved every step."""
    import yaml

    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return ["--config", str(path), "--workers", "0", "--threads", "1", "--save-every", "1"]


def quick_launch(**changes: Any) -> LaunchOptions:
    """In-process loading, one thread per process."""
    return LaunchOptions(**{"workers": 0, "threads": 1, **changes})


def step_losses(run: Path) -> dict[int, float]:
    """step -> loss from a run's metrics.jsonl."""
    return {
        r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["type"] == "step"
    }
