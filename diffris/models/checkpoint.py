"""Trained-model folders: save and load the trainable weights of a model of any architecture.

A trained model is a folder of three files, none of them a pickle::

    model.safetensors   the trainable weights only (DiffRIS: CP-adapter + decoder; RSRefSeg:
                        LoRA + prompter + SAM's prompt encoder and mask decoder)
    config.json         {"architecture": "diffris" | "rsrefseg", "format_version": 1,
                         "preset": ..., "model": <the architecture's config>.to_dict()}
                        (all options + the frozen backbone's identity and fingerprint)
    metadata.json       versions, creation time, parameter counts, and whatever the caller adds
                        (training data, metrics, ...)

The frozen backbone is not stored: the architecture rebuilds it from its preset (``tiny``:
deterministic; ``sd15``, ``rsrefseg-b``: local folders) and refuses it unless its fingerprint
matches the one the model was trained on (:mod:`diffris.models.fingerprint`). Loading checks
every tensor's name and shape and reports all mismatches in one message.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from diffris import __version__
from diffris.errors import (
    CheckpointMismatchError,
    InputError,
    OutputExistsError,
    WeightsNotFoundError,
)
from diffris.messages import cut
from diffris.models.interface import ModelConfig, ReferringModel
from diffris.models.names import CONFIG_NAME, PRESETS, WEIGHTS_NAME, Pretrained
from diffris.models.registry import ARCHITECTURES, architecture
from diffris.tensor_files import save_tensors

logger = logging.getLogger(__name__)

METADATA_NAME = "metadata.json"
FORMAT_VERSION = 1
_RESERVED_METADATA = ("created", "versions", "parameters")


def save_trained(
    model: ReferringModel,
    folder: str | os.PathLike[str],
    *,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model``'s trainable weights, config and metadata as a trained-model folder.

    The folder is written under a temporary name next to it and renamed into place when
    complete, so an interrupted save never leaves a plausible-looking model behind.

    Args:
        model: the model to save.
        folder: destination folder.
        metadata: JSON-able extras, e.g. ``{"dataset": "rrsisd", "metrics": {"oIoU": 76.0}}``;
            the keys created, versions and parameters are written by diffris itself.
        overwrite: replace an existing trained-model folder (never any other folder).

    Returns:
        ``folder`` as a path.

    Raises:
        OutputExistsError: ``folder`` exists and ``overwrite`` is off, or it is not a
            trained-model folder.
        InputError: ``metadata`` uses a reserved key or is not JSON-able.
    """
    folder = Path(folder).expanduser()
    extra = dict(metadata or {})
    if clash := sorted(set(extra) & set(_RESERVED_METADATA)):
        raise InputError(f"metadata key(s) {', '.join(clash)} are written by diffris; rename them")
    if folder.exists():
        if not overwrite:
            raise OutputExistsError(f"{folder} exists; pass overwrite=True to replace it")
        if not (folder / CONFIG_NAME).is_file():
            raise OutputExistsError(
                f"{folder} exists and is not a trained-model folder; refusing to replace it, "
                "choose another path"
            )
    info = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "parameters": {
            "trainable": model.trainable_parameter_count(),
            "frozen": model.frozen_parameter_count(),
        },
        **extra,
    }
    try:
        metadata_text = json.dumps(info, indent=2, sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InputError(f"metadata is not JSON-able: {err}") from err
    config = {
        "architecture": model.architecture,
        "format_version": FORMAT_VERSION,
        "preset": model.config.backbone.preset,
        "model": model.config.to_dict(),
    }
    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.trainable_state_dict().items()
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        save_tensors(tensors, staging / WEIGHTS_NAME, metadata={"format": "pt"})
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (staging / METADATA_NAME).write_text(metadata_text + "\n")
        _replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved trained model to %s (%d tensors)", folder, len(tensors))
    return folder


def read_config(folder: str | os.PathLike[str]) -> ModelConfig:
    """The model config of a trained-model folder (its architecture's), checked for version.

    Raises:
        WeightsNotFoundError: the folder or one of its files is missing.
        CheckpointMismatchError: the config is malformed or for another architecture/version.
    """
    return read_architecture_and_config(folder)[1]


def read_architecture_and_config(folder: str | os.PathLike[str]) -> tuple[str, ModelConfig]:
    """The architecture name and model config of a trained-model folder (see :func:`read_config`).

    Raises:
        WeightsNotFoundError: the folder or one of its files is missing.
        CheckpointMismatchError: the config is malformed or for another architecture/version.
    """
    folder = _check_folder(Path(folder).expanduser())
    path = folder / CONFIG_NAME
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointMismatchError(f"{path} is not valid JSON: {err}") from err
    except RecursionError as err:
        raise CheckpointMismatchError(f"{path} is nested too deeply to be a model config") from err
    if not isinstance(raw, dict):
        raise CheckpointMismatchError(
            f"{path} holds a JSON {type(raw).__name__}; expected the object diffris writes"
        )
    name = raw.get("architecture")
    if name not in ARCHITECTURES:
        raise CheckpointMismatchError(
            f"{path} names architecture {cut(name)}; this diffris loads "
            f"{', '.join(repr(known) for known in ARCHITECTURES)}"
        )
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path} has format_version {cut(version)}; diffris {__version__} reads "
            f"{FORMAT_VERSION}; upgrade diffris"
        )
    if not isinstance(raw.get("model"), dict):
        raise CheckpointMismatchError(f"{path} has no 'model' options object")
    try:
        return name, architecture(name).CONFIG_CLASS.from_dict(raw["model"])
    except (InputError, TypeError) as err:
        raise CheckpointMismatchError(f"{path}: {err}") from err


def read_metadata(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata.json`` of a trained-model folder as a dict."""
    path = _check_folder(Path(folder).expanduser()) / METADATA_NAME
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as err:
        raise CheckpointMismatchError(f"{path} is not a JSON object: {err}") from err


def load_trained(
    folder: str | os.PathLike[str],
    *,
    pretrained: Pretrained = None,
    device: str | torch.device | None = None,
    check_backbone: bool = True,
) -> ReferringModel:
    """Rebuild a trained model: its architecture's preset backbone plus the saved weights.

    Args:
        folder: written by :func:`save_trained`.
        pretrained: folders of the frozen foundations (see :data:`~diffris.models.names.
            Pretrained`); None looks in the environment variables and the diffris cache.
        device: where to put the model (default: the CPU).
        check_backbone: refuse a backbone whose weight fingerprint differs from the one the
            model was trained on (turn off only to experiment with another copy).

    Returns:
        The model in eval mode.

    Raises:
        WeightsNotFoundError: the folder, a file in it, or the backbone weights are missing.
        CheckpointMismatchError: the backbone or any tensor does not match (all named at once).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    name, config = read_architecture_and_config(folder)
    model = architecture(name).rebuild(
        config, pretrained=pretrained, check_backbone=check_backbone, source=folder
    )
    weights = folder / WEIGHTS_NAME
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise CheckpointMismatchError(
            f"{weights} is not a readable safetensors file: {err}"
        ) from err
    model.load_trainable_state_dict(state, source=str(weights))
    target = torch.device("cpu") if device is None else torch.device(device)
    return model.to(target).eval()


def _check_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise WeightsNotFoundError(
            f"trained model folder {folder} does not exist; give a folder written by "
            f"save_trained (or a preset name: {', '.join(PRESETS)})"
        )
    missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME, METADATA_NAME) if not (folder / n).is_file()]
    if missing:
        raise WeightsNotFoundError(
            f"{folder} is not a trained-model folder: missing {', '.join(missing)} (expected "
            f"{WEIGHTS_NAME}, {CONFIG_NAME}, {METADATA_NAME})"
        )
    return folder


def _replace(staging: Path, folder: Path) -> None:
    """Move ``staging`` to ``folder``, swapping out an existing folder as late as possible."""
    if not folder.exists():
        staging.rename(folder)
        return
    old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
    folder.rename(old)
    try:
        staging.rename(folder)
    except BaseException:
        old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _versions() -> dict[str, str]:
    versions = {"diffris": __version__, "torch": torch.__version__}
    for package in ("diffusers", "transformers", "peft", "safetensors"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
