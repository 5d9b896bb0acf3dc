"""The run folder: what a training run writes, and the rules for starting, resuming, replacing.

::

    <run>/config.yaml        the TrainConfig (everything needed to reproduce the run) + launch info
    <run>/metrics.jsonl      one JSON object per logged step and per epoch (validation scores)
    <run>/best/              trained-model folder of the epoch with the best validation oIoU
    <run>/last/              trained-model folder of the last finished epoch
    <run>/state/             the resumable state (see :mod:`diffris.train.state`)
    <run>/latents.safetensors  the VAE latent cache (``cache_latents``), reused on resume

Only rank 0 writes here. Every file is replaced atomically, and ``metrics.jsonl`` is cut back on
resume to what the saved state had seen, so a resumed run's log reads like an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from diffris import __version__
from diffris.errors import (
    CheckpointMismatchError,
    InputError,
    InputNotFoundError,
    OutputExistsError,
    OutputNotWritableError,
)
from diffris.train.config import LaunchOptions, TrainConfig
from diffris.train.state import STATE_DIR, atomic_write_text, has_state

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.jsonl"
BEST_NAME = "best"
LAST_NAME = "last"
LATENTS_NAME = "latents.safetensors"


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run's folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_NAME

    @property
    def best(self) -> Path:
        return self.root / BEST_NAME

    @property
    def last(self) -> Path:
        return self.root / LAST_NAME

    @property
    def latents(self) -> Path:
        return self.root / LATENTS_NAME


def check_run_folder(root: Path, *, resume: bool, overwrite: bool) -> RunFolder:
    """Check that ``root`` may be used as asked, without changing anything.

    Raises:
        InputError: both ``resume`` and ``overwrite``.
        InputNotFoundError: ``resume`` but ``root`` holds no saved state.
        OutputExistsError: ``root`` exists (and is not empty) without ``resume``/``overwrite``,
            or ``overwrite`` of a folder that is not a training run.
    """
    if resume and overwrite:
        raise InputError("--resume and --overwrite contradict each other; pass one of them")
    run = RunFolder(root)
    _refuse_links(run)
    if resume:
        if not root.is_dir():
            raise InputNotFoundError(f"--resume {root}: the folder does not exist")
        if not has_state(root):
            raise InputNotFoundError(
                f"--resume {root}: no training state in it (state/state.json is missing); "
                "start a new run with -o/--overwrite instead"
            )
        return run
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        if not overwrite:
            raise OutputExistsError(
                f"{root} exists; pass --resume {root} to continue its training, or --overwrite "
                "to start over"
            )
        if not run.config.is_file():
            raise OutputExistsError(
                f"{root} exists and is not a diffris run folder (no {CONFIG_NAME}); refusing to "
                "replace it, choose another -o"
            )
    return run


def _refuse_links(run: RunFolder) -> None:
    # A link planted at a fixed name would be written (metrics.jsonl cut on resume) through.
    for name in (CONFIG_NAME, METRICS_NAME, BEST_NAME, LAST_NAME, LATENTS_NAME, STATE_DIR):
        path = run.root / name
        if path.is_symlink():
            raise OutputNotWritableError(
                f"{path} is a symbolic link, not what diffris writes in a run folder; remove the "
                "link (diffris does not follow it) and rerun"
            )


def start_run_folder(run: RunFolder, *, overwrite: bool) -> None:
    """Create the folder, removing an old run first with ``overwrite`` (after the checks)."""
    if overwrite and run.config.is_file():
        logger.info("--overwrite: removing the previous run in %s", run.root)
        shutil.rmtree(run.root)
    run.root.mkdir(parents=True, exist_ok=True)


def write_config(run: RunFolder, config: TrainConfig, launch: LaunchOptions, world: int) -> None:
    """``config.yaml``: the config, and how the run was first launched (for information)."""
    document = {
        "diffris_version": __version__,
        "config": config.to_dict(),
        "launch": {**launch.to_dict(), "world_size": world},
    }
    header = f"# diffris training run; continue it with: diffris train --resume {run.root}\n"
    atomic_write_text(run.config, header + yaml.safe_dump(document, sort_keys=False))


def read_config(run: RunFolder) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``config.yaml``.

    Raises:
        InputNotFoundError: no ``config.yaml``.
        CheckpointMismatchError: the file is malformed.
    """
    if not run.config.is_file():
        raise InputNotFoundError(f"{run.config} is missing; this is not a diffris run folder")
    try:
        document = yaml.safe_load(run.config.read_text(encoding="utf-8"))
        return TrainConfig.from_dict(document["config"])
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise CheckpointMismatchError(f"{run.config} is not a training config: {err}") from err


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (rank 0 only), flushed line by line.

    Args:
        path: the file.
        keep_bytes: on resume, cut the file to this many bytes first (what the saved state had
            seen); None starts a new file.
    """

    def __init__(self, path: Path, *, keep_bytes: int | None = None) -> None:
        self.path = path
        if keep_bytes is None:
            path.write_bytes(b"")
        else:
            with path.open("ab") as stream:  # creates it if a crash happened before any line
                stream.truncate(min(keep_bytes, os.fstat(stream.fileno()).st_size))
        self._stream = path.open("ab")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as a line."""
        line = json.dumps(record, allow_nan=True, separators=(",", ":")) + "\n"
        self._stream.write(line.encode("utf-8"))
        self._stream.flush()

    def size(self) -> int:
        """Bytes written so far."""
        self._stream.flush()
        return self._stream.tell()

    def close(self) -> None:
        self._stream.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a torn last line is ignored)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records
