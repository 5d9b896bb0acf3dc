"""What ``--model`` names, checked and identified from the file system alone.

A run checks its ``--model`` before anything heavy loads (torch, dask): a misspelt folder fails
in a fraction of a second, and the archive names its ledger rows without loading the model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from diffris.errors import InputError, InputNotFoundError, WeightsNotFoundError

#: The built-in presets (keys of :data:`diffris.models.build.MODEL_REGISTRY`).
PRESETS = ("tiny", "sd15")
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
