"""Trained-model folders: save and load the trainable weights of a DiffRIS model.

A trained model is a folder of three files, none of them a pickle::

    model.safetensors   the trainable weights only (CP-adapter + decoder), float tensors
    config.json         {"architecture": "diffris", "format_version": 1, "preset": ...,
                         "model": DiffRISConfig.to_dict()}  (all options + backbone identity)
    metadata.json       versions, creation time, parameter counts, and whatever the caller adds
                        (training data, metrics, ...)

The frozen backbone is not stored: it is rebuilt from its preset (``tiny``: deterministic; ``sd15``:
the local Stable Diffusion folder), and its fingerprint must match the one the model was trained
on (every tensor, :mod:`diffris.models.fingerprint`; a config of an older diffris records a
partial, scheme-1 fingerprint, which is checked as such, with a warning). Loading checks every tensor's name and shape and reports all mismatches in one message.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import math
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
from diffris.models.diffris import BackboneIdentity, DiffRIS, DiffRISConfig
from diffris.models.fingerprint import FINGERPRINT_SCHEME, LEGACY_SCHEME, legacy_fingerprint
from diffris.models.names import CONFIG_NAME, WEIGHTS_NAME
from diffris.models.sd_configs import SD_SCALING_FACTOR
from diffris.tensor_files import save_tensors

logger = logging.getLogger(__name__)

METADATA_NAME = "metadata.json"
ARCHITECTURE = "diffris"
FORMAT_VERSION = 1
_RESERVED_METADATA = ("created", "versions", "parameters")


def save_trained(
    model: DiffRIS,
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
        "architecture": ARCHITECTURE,
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


def read_config(folder: str | os.PathLike[str]) -> DiffRISConfig:
    """The :class:`DiffRISConfig` of a trained-model folder, checked for architecture/version.

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
    architecture = raw.get("architecture")
    if architecture != ARCHITECTURE:
        raise CheckpointMismatchError(
            f"{path} names architecture {cut(architecture)}; this diffris loads {ARCHITECTURE!r}"
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
        return DiffRISConfig.from_dict(raw["model"])
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
    pretrained: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    check_backbone: bool = True,
) -> DiffRIS:
    """Rebuild a trained model: its preset backbone plus the saved trainable weights.

    Args:
        folder: written by :func:`save_trained`.
        pretrained: Stable Diffusion folder for ``sd15`` models (else ``$DIFFRIS_SD15``).
        device: where to put the model (default: the CPU).
        check_backbone: refuse a backbone whose weight fingerprint differs from the one the
            model was trained on (turn off only to experiment with another SD-1.5 copy).

    Returns:
        The model in eval mode.

    Raises:
        WeightsNotFoundError: the folder, a file in it, or the backbone weights are missing.
        CheckpointMismatchError: the backbone or any tensor does not match (all named at once).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from diffris.models.build import build_diffris

    folder = Path(folder).expanduser()
    config = read_config(folder)
    expected = config.backbone
    try:
        model = build_diffris(
            expected.preset,
            pretrained=pretrained,
            cp_adapter=config.cp_adapter,
            pcmrd=config.pcmrd,
            latent_scale=config.latent_scale,
            timestep=config.timestep,
            max_tokens=config.max_tokens,
            mask_threshold=config.mask_threshold,
        )
    except InputError as err:
        raise CheckpointMismatchError(f"{folder / CONFIG_NAME}: {err}") from err
    actual = model.config.backbone
    shape = (expected.text_dim, tuple(expected.feature_channels))
    if shape != (actual.text_dim, tuple(actual.feature_channels)):
        raise CheckpointMismatchError(
            f"{folder} was trained on a backbone with text width {expected.text_dim} and feature "
            f"channels {tuple(expected.feature_channels)}; the {actual.preset} backbone has "
            f"{actual.text_dim} and {tuple(actual.feature_channels)}"
        )
    _check_fingerprint(folder, model, expected, check_backbone)
    _check_latent_scale(folder, model)
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


def _check_fingerprint(
    folder: Path, model: DiffRIS, expected: BackboneIdentity, check_backbone: bool
) -> None:
    """Refuse (or, without ``check_backbone``, warn about) a backbone other than the trained one.

    A config written by an older diffris records a scheme-1 fingerprint (three tensors per
    module); it is checked with that scheme, and a warning says the check was partial.
    """
    actual = model.config.backbone
    scheme = expected.fingerprint_scheme
    if scheme > FINGERPRINT_SCHEME:
        raise CheckpointMismatchError(
            f"{folder / CONFIG_NAME} records a backbone fingerprint of scheme {scheme}; diffris "
            f"{__version__} knows schemes up to {FINGERPRINT_SCHEME}: upgrade diffris"
        )
    found = actual.fingerprint
    if scheme == LEGACY_SCHEME:
        parts = [model.backbone.vae, model.backbone.unet, model.text_encoder.model]
        found = legacy_fingerprint(parts, extra=[str(len(model.text_encoder.tokenizer))])
    if expected.fingerprint != found:
        message = (
            f"{folder} was trained on the {expected.preset} backbone with fingerprint "
            f"{expected.fingerprint}, but the loaded backbone has {found} (other "
            "weights, or another torch/diffusers version for tiny)"
        )
        if check_backbone:
            raise CheckpointMismatchError(message + "; load the backbone it was trained on")
        logger.warning("%s; loading anyway (check_backbone=False)", message)
    elif scheme == LEGACY_SCHEME:
        logger.warning(
            "%s was saved by an older diffris, whose backbone fingerprint covers only a few "
            "tensors: the backbone was checked only that far; save the model again "
            "(save_trained(load_trained(folder), new_folder)) to record the full fingerprint",
            folder,
        )


def _check_latent_scale(folder: Path, model: DiffRIS) -> None:
    """Warn when the backbone's VAE config asks for another latent scale than the trained one.

    The trained heads only ever saw latents at the recorded ``latent_scale``, so that one is used;
    a folder that says otherwise (and is not SD-1.x's own 0.18215) is worth a word.
    """
    trained = model.config.latent_scale
    folder_scale = model.backbone.vae.config.get("scaling_factor") or SD_SCALING_FACTOR
    if folder_scale != SD_SCALING_FACTOR and not math.isclose(folder_scale, trained):
        logger.warning(
            "%s was trained with latent_scale %s but the backbone's VAE config says "
            "scaling_factor %s; using %s, the scale the trained heads expect",
            folder,
            trained,
            folder_scale,
            trained,
        )


def _check_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise WeightsNotFoundError(
            f"trained model folder {folder} does not exist; give a folder written by "
            "save_trained (or a preset name: tiny, sd15)"
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
    for package in ("diffusers", "transformers", "safetensors"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
