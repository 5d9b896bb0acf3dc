"""The run folder: what a training run writes, and the rules for starting, resuming, replacing.

::

    <run>/config.yaml        the TrainConfig and the LaunchOptions (restored by --resume)
    <run>/metrics.jsonl      one JSON object per logged step and per epoch (validation scores)
    <run>/best/              trained-model folder of the epoch with the best validation score
    <run>/last/              trained-model folder of the last finished epoch
    <run>/state/             the resumable state (see :mod:`diffris.train.state`)
    <run>/latents.safetensors  the VAE latent cache (``cache_latents``), reused on resume

A run killed before its first state save (``config.yaml``, no ``state/``) is resumable: it
starts again from step 0. Only rank 0 writes here, and never through a symbolic link planted
under one of these names (:func:`check_fixed_names`). Every file is replaced atomically, and ``metrics.jsonl`` is cut back on
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
    DiffrisError,
    InputError,
    InputNotFoundError,
    OutputExistsError,
    OutputNotWritableError,
)
from diffris.train.config import LaunchOptions, TrainConfig
from diffris.train.state import POINTER_NAME, STATE_DIR, atomic_write_text

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


#: The fixed names diffris writes in a run folder, and whether each is a folder. A symbolic link
#: (or the wrong kind of entry) under one of these names is refused: writing through it would
#: change a file elsewhere.
FIXED_NAMES = {
    CONFIG_NAME: False,
    METRICS_NAME: False,
    BEST_NAME: True,
    LAST_NAME: True,
    STATE_DIR: True,
    LATENTS_NAME: False,
}
#: Longest piece of a damaged file's content or of a parser's message put into an error line.
MAX_QUOTE = 160


def _cut(text: object) -> str:
    """``text`` as one short line (messages never embed unbounded input)."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_QUOTE else line[: MAX_QUOTE - 3] + "..."


def check_fixed_names(root: Path) -> None:
    """Refuse a run folder where a name diffris writes is a link or the wrong kind of entry.

    Raises:
        OutputExistsError: naming the entry and the fix.
    """
    entries = [(root / name, is_dir) for name, is_dir in FIXED_NAMES.items()]
    entries.append((root / STATE_DIR / POINTER_NAME, False))
    for path, is_dir in entries:
        if path.is_symlink():
            raise OutputExistsError(
                f"{path} is a symbolic link; diffris writes this name itself and does not follow "
                "links out of a run folder; remove the link"
            )
        if path.exists() and not (path.is_dir() if is_dir else path.is_file()):
            kind = "a folder" if is_dir else "a regular file"
            raise OutputExistsError(
                f"{path} is not {kind} as a training run writes it; move it out of the run folder"
            )


def _leftovers(root: Path) -> list[Path]:
    """The entries of ``root`` other than a temporary ``config.yaml`` of a run killed at birth."""
    return [p for p in root.iterdir() if not p.name.startswith(f".{CONFIG_NAME}.tmp-")]


def check_run_folder(root: Path, *, resume: bool, overwrite: bool) -> RunFolder:
    """Check that ``root`` may be used as asked, without changing anything.

    A run folder killed before its first state save (``config.yaml`` but no ``state/``) may be
    resumed: it starts from step 0.

    Raises:
        InputError: both ``resume`` and ``overwrite``.
        InputNotFoundError: ``resume`` but ``root`` is not a run folder.
        OutputExistsError: ``root`` exists (and is not empty) without ``resume``/``overwrite``,
            ``overwrite`` of a folder that is not a training run, or a fixed name that is a link.
    """
    if resume and overwrite:
        raise InputError("--resume and --overwrite contradict each other; pass one of them")
    run = RunFolder(root)
    if root.is_dir():
        check_fixed_names(root)  # a link planted there would be written through
    if resume:
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise InputNotFoundError(f"--resume {root}: {what}; give a training run folder")
        if not run.config.is_file():
            raise InputNotFoundError(
                f"--resume {root}: not a diffris run folder (no {CONFIG_NAME}); start a new run "
                "with -o instead"
            )
        return run
    if root.exists() and not root.is_dir():
        raise OutputExistsError(f"-o {root} is a file, not a folder; choose another -o")
    if root.is_dir() and _leftovers(root):
        if not run.config.is_file() or run.config.is_symlink():
            raise OutputExistsError(
                f"{root} exists and is not a diffris run folder (no {CONFIG_NAME}); refusing to "
                "use or replace it, choose another -o"
            )
        if not overwrite:
            raise OutputExistsError(
                f"{root} holds a training run; pass --resume {root} to continue it (from step 0 "
                "if it saved no state yet), or --overwrite to start over"
            )
    return run


def start_run_folder(run: RunFolder, *, overwrite: bool) -> None:
    """Create the folder, removing an old run first with ``overwrite`` (after the checks)."""
    try:
        if overwrite and run.config.is_file():
            logger.info("--overwrite: removing the previous run in %s", run.root)
            shutil.rmtree(run.root)
        run.root.mkdir(parents=True, exist_ok=True)
        for stale in run.root.glob(f".{CONFIG_NAME}.tmp-*"):  # of a run killed at its start
            stale.unlink()
    except OSError as err:
        raise OutputNotWritableError(
            f"cannot create the run folder {run.root}: {_cut(err.strerror or err)}; choose "
            "another -o"
        ) from err


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated values in full (:func:`read_config` refuses aliases)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_config(run: RunFolder, config: TrainConfig, launch: LaunchOptions, world: int) -> None:
    """``config.yaml``: the config, and the launch options a ``--resume`` restores."""
    document = {
        "diffris_version": __version__,
        "config": config.to_dict(),
        "launch": {**launch.to_dict(), "world_size": world},
    }
    header = f"# diffris training run; continue it with: diffris train --resume {run.root}\n"
    atomic_write_text(
        run.config, header + yaml.dump(document, Dumper=_NoAliasDumper, sort_keys=False)
    )


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader without anchors and aliases (a few hundred bytes of them expand to GBs)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases (*name) are not allowed in a run's config.yaml")
        return super().compose_node(parent, index)


def _read_document(run: RunFolder) -> dict[str, Any]:
    if not run.config.is_file():
        raise InputNotFoundError(f"{run.config} is missing; this is not a diffris run folder")
    try:
        document = yaml.load(run.config.read_text(encoding="utf-8"), Loader=_NoAliasLoader)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointMismatchError(
            f"{run.config} is not a training run's config: {_cut(err)}; restore it, or start a "
            "new run with --overwrite"
        ) from err
    except OSError as err:
        raise CheckpointMismatchError(f"{run.config} cannot be read: {_cut(err)}") from err
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise CheckpointMismatchError(
            f"{run.config} is not a training run's config (no 'config:' mapping); restore it, or "
            "start a new run with --overwrite"
        )
    return document


def read_config(run: RunFolder) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``config.yaml``.

    Raises:
        InputNotFoundError: no ``config.yaml``.
        CheckpointMismatchError: the file is malformed.
    """
    document = _read_document(run)
    try:
        return TrainConfig.from_dict(document["config"])
    except (DiffrisError, TypeError, ValueError, KeyError, RecursionError) as err:
        raise CheckpointMismatchError(
            f"{run.config} holds an invalid training config: {_cut(err)}"
        ) from err


def read_launch(run: RunFolder) -> tuple[LaunchOptions, int | None]:
    """The :class:`LaunchOptions` the run was started with (``launch:`` in ``config.yaml``), and
    its process count (None if not recorded).

    Raises:
        CheckpointMismatchError: the section is malformed.
    """
    saved = _read_document(run).get("launch") or {}
    if not isinstance(saved, dict):
        raise CheckpointMismatchError(f"{run.config}: 'launch:' is not a mapping")
    values = {key: value for key, value in saved.items() if key != "world_size"}
    try:
        launch = LaunchOptions.from_dict(values)
    except (DiffrisError, TypeError, ValueError) as err:
        raise CheckpointMismatchError(
            f"{run.config} holds invalid launch options: {_cut(err)}"
        ) from err
    world = saved.get("world_size")
    return launch, world if isinstance(world, int) and not isinstance(world, bool) else None


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (rank 0 only), flushed line by line.

    Args:
        path: the file.
        keep_bytes: on resume, cut the file to this many bytes first (what the saved state had
            seen); None starts a new file.
    """

    def __init__(self, path: Path, *, keep_bytes: int | None = None) -> None:
        self.path = path
        # O_NOFOLLOW: a link planted under this name must not lead the truncation elsewhere
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        handle = os.open(path, flags, 0o644)
        self._stream = os.fdopen(handle, "ab")
        size = os.fstat(handle).st_size
        self._stream.truncate(0 if keep_bytes is None else min(keep_bytes, size))
        self._stream.seek(0, os.SEEK_END)

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
