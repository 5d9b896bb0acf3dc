"""Shared pieces of the training tests: a small synthetic dataset and a fast tiny-model recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffris.data.synthetic import write_dataset
from diffris.train import LaunchOptions, TrainConfig
from diffris.train.run_folder import read_metrics

#: 16 training, 4 validation, 4 test samples of 128² px: a few seconds per epoch on one thread.
SPLITS = (16, 4, 4)
SIZE = 128


def write_small_dataset(root: Path, *, layout: str = "risbench", seed: int = 0) -> Path:
    """A synthetic dataset in ``layout`` under ``root`` (seeded: byte-identical every time)."""
    write_dataset(root, layout=layout, samples=sum(SPLITS), splits=SPLITS, size=SIZE, seed=seed)
    return root


def small_config(root: Path, **changes: Any) -> TrainConfig:
    """The tiny preset at 128², global batch 4 in micro-batches of 2, 2 epochs, lr 1e-3."""
    values: dict[str, Any] = {
        "dataset": "synthetic",
        "data_root": str(root),
        "preset": "tiny",
        "epochs": 2,
        "batch_size": 4,
        "device_batch": 2,
        "image_size": SIZE,
        "lr": 1e-3,
        **changes,
    }
    return TrainConfig(**values)


def quick_launch(**changes: Any) -> LaunchOptions:
    """In-process loading, one thread per process."""
    return LaunchOptions(**{"workers": 0, "threads": 1, **changes})


def step_losses(run: Path) -> dict[int, float]:
    """step -> loss from a run's metrics.jsonl."""
    return {
        r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["type"] == "step"
    }
