"""What ``--model`` names, checked and identified from the file system alone.

A run checks its ``--model`` before anything heavy loads (torch, dask): a misspelt folder fails
in a fraction of a second, and the archive names its ledger rows without loading the model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

from diffris.errors import InputError, InputNotFoundError, WeightsNotFoundError

#: Each built-in preset and the architecture that builds it (:mod:`diffris.models.registry`).
PRESET_ARCHITECTURES = {
    "tiny": "diffris",
    "sd15": "diffris",
    "rsrefseg-tiny": "rsrefseg",
    "rsrefseg-b": "rsrefseg",
    "rsrefseg-l": "rsrefseg",
}
#: The built-in presets.
PRESETS = tuple(PRESET_ARCHITECTURES)
#: Presets whose frozen weights are random (built for tests and demos, not for real imagery).
DEMO_PRESETS = ("tiny", "rsrefseg-tiny")
#: The frozen foundations a preset may load from local folders, by ``--pretrained`` key.
PRETRAINED_KEYS = ("sd15", "siglip", "sam")
#: Where frozen foundations come from: one folder (the model's only one), a mapping of
#: :data:`PRETRAINED_KEYS` to folders, or None (environment variables, the diffris cache).
Pretrained: TypeAlias = str | os.PathLike[str] | Mapping[str, str] | None
#: The files of a trained-model folder.
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

_HASH_CHUNK = 1 << 20


def resolve_model(name_or_folder: str | os.PathLike[str]) -> str | Path:
    """What ``--model`` names: a preset (returned as its name) or a trained-model folder.

    A preset name wins (write ``./tiny`` for a folder called tiny). Anything that looks like a
    path (it contains a path separator, starts with ``.`` or ``~``, or exists) is a folder and
    must hold a trained model's ``config.json``; any other word is an unknown preset. Only looks
    at the file system, so a run can check ``--model`` before it starts.

    Raises:
        InputError: an unknown preset name, or a file given instead of a folder.
        InputNotFoundError: the folder does not exist.
        WeightsNotFoundError: the folder holds no trained model (no ``config.json``).
    """
    name = str(name_or_folder)
    if name in PRESETS:
        return name
    folder = Path(name).expanduser()
    separators = {os.sep, os.altsep or os.sep, "/"}
    if not (
        any(sep in name for sep in separators) or name.startswith((".", "~")) or folder.exists()
    ):
        raise InputError(
            f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}, "
            "or a trained-model folder"
        )
    if not folder.exists():
        raise InputNotFoundError(
            f"model folder {folder} does not exist; give a trained-model folder (written by "
            f"diffris train) or a preset: {', '.join(PRESETS)}"
        )
    if not folder.is_dir():
        raise InputError(
            f"model {folder} is a file, not a trained-model folder; give the folder that holds "
            f"{CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    if not (folder / CONFIG_NAME).is_file():
        raise WeightsNotFoundError(
            f"{folder} is not a trained-model folder (no {CONFIG_NAME}); give a folder written "
            "by diffris train, e.g. runs/NAME/best"
        )
    return folder


def model_identity(name_or_folder: str | os.PathLike[str]) -> str:
    """A short, stable name for a model: ``tiny`` or ``<folder name>@<weights hash>``.

    The hash covers the trained weights and the config, so retraining into the same folder
    changes the identity (and makes the archive reprocess its scenes).

    Raises:
        InputError, InputNotFoundError, WeightsNotFoundError: ``name_or_folder`` is neither a
            preset nor a trained-model folder (see :func:`resolve_model`).
    """
    source = resolve_model(name_or_folder)
    if isinstance(source, str):
        return source
    digest = hashlib.sha256()
    for part in (CONFIG_NAME, WEIGHTS_NAME):
        path = source / part
        if path.is_file():
            with path.open("rb") as stream:
                while chunk := stream.read(_HASH_CHUNK):
                    digest.update(chunk)
    return f"{source.resolve().name}@{digest.hexdigest()[:12]}"


def model_spec(name_or_folder: str | os.PathLike[str]) -> str:
    """A preset name as it is, a trained-model folder as an absolute path.

    Scenes may run in processes started in another folder (dask workers on other machines), so
    a folder given relative to the caller's working folder is resolved where it was typed.
    """
    name = str(name_or_folder)
    return name if name in PRESETS else os.path.abspath(os.path.expanduser(name))


def pretrained_folder(pretrained: Pretrained, key: str, *, sole: bool) -> str | None:
    """The folder ``pretrained`` gives for the foundation ``key``, or None (look elsewhere).

    Args:
        pretrained: see :data:`Pretrained`.
        key: one of :data:`PRETRAINED_KEYS`.
        sole: whether a bare folder can mean ``key`` (a model with one foundation); a model
            with several needs ``key=DIR``.

    Raises:
        InputError: a bare folder for a model that needs several.
    """
    if pretrained is None:
        return None
    if isinstance(pretrained, Mapping):
        value = pretrained.get(key)
        return None if value is None else str(value)
    if not sole:
        raise InputError(
            f"--pretrained {pretrained} is ambiguous for this model, which loads several "
            f"foundations; write --pretrained {key}=DIR (keys: {', '.join(PRETRAINED_KEYS)})"
        )
    return str(pretrained)


def parse_pretrained(values: Sequence[str]) -> Pretrained:
    """``--pretrained`` values: one bare folder, or ``KEY=DIR`` pairs (``siglip=/w/siglip``).

    Raises:
        InputError: an unknown key, a key given twice, or a bare folder mixed with pairs.
    """
    if not values:
        return None
    pairs: dict[str, str] = {}
    bare: list[str] = []
    for value in values:
        key, sep, folder = value.partition("=")
        if sep and key in PRETRAINED_KEYS and folder:
            if key in pairs:
                raise InputError(f"--pretrained {key}= given twice; give each foundation once")
            pairs[key] = os.path.abspath(os.path.expanduser(folder))
        elif sep and key and "/" not in key and os.sep not in key and not Path(value).exists():
            raise InputError(
                f"--pretrained {value}: unknown foundation {key!r}; use one of "
                f"{', '.join(f'{k}=DIR' for k in PRETRAINED_KEYS)}, or a bare folder"
            )
        else:
            bare.append(os.path.abspath(os.path.expanduser(value)))
    if bare and (pairs or len(bare) > 1):
        raise InputError(
            "--pretrained takes one bare folder, or KEY=DIR pairs (e.g. --pretrained "
            "siglip=DIR --pretrained sam=DIR); not both"
        )
    return bare[0] if bare else pairs
