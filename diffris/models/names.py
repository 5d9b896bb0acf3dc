"""What ``--model`` names, checked and identified from the file system alone.

A run checks its ``--model`` before anything heavy loads (torch, dask): a misspelt folder fails
in a fraction of a second, and the archive names its ledger rows without loading the model.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

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
#: The frozen foundations each architecture loads, by ``--pretrained`` key (the first: a bare
#: folder's meaning where there is only one).
ARCHITECTURE_FOUNDATIONS = {"diffris": ("sd15",), "rsrefseg": ("siglip", "sam")}
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


def pretrained_folder(
    pretrained: Pretrained, key: str, *, sole: bool, keys: Sequence[str] | None = None
) -> str | None:
    """The folder ``pretrained`` gives for the foundation ``key``, or None (look elsewhere).

    Args:
        pretrained: see :data:`Pretrained`.
        key: one of :data:`PRETRAINED_KEYS`.
        sole: whether a bare folder can mean ``key`` (a model with one foundation); a model
            with several needs ``key=DIR``.
        keys: the model's foundations, named in the message (default: ``key`` alone).

    Raises:
        InputError: a bare folder for a model that needs several.
    """
    if pretrained is None:
        return None
    if isinstance(pretrained, Mapping):
        value = pretrained.get(key)
        return None if value is None else str(value)
    if not sole:
        named = " ".join(f"--pretrained {k}=DIR" for k in (keys or (key,)))
        raise InputError(
            f"--pretrained {os.fspath(pretrained)} is a bare folder, but this model loads "
            f"several foundations; name each one: {named}"
        )
    return str(pretrained)


def parse_pretrained(values: Sequence[str] | None) -> Pretrained:
    """``--pretrained`` values: one bare folder, or ``KEY=DIR`` pairs (``siglip=/w/siglip``).

    Folders come back absolute (``~`` expanded), so that they mean the same in processes
    started elsewhere (dask workers, torchrun ranks). A value whose text before the first ``=``
    contains a path separator (``/data/a=b``) is a bare folder.

    Returns:
        None (nothing given), the folder as a string, or ``{key: folder}``.

    Raises:
        InputError: an unknown key, a key given twice or without a folder, several bare
            folders, or a bare folder mixed with pairs.
    """
    if not values:
        return None
    pairs: dict[str, str] = {}
    bare: list[str] = []
    for value in values:
        key, sep, folder = value.partition("=")
        is_pair = bool(sep) and bool(key) and "/" not in key and os.sep not in key
        if not is_pair or (key not in PRETRAINED_KEYS and Path(value).exists()):
            bare.append(os.path.abspath(os.path.expanduser(value)))
            continue
        if key not in PRETRAINED_KEYS:
            raise InputError(
                f"--pretrained {value}: unknown foundation {key!r}; use one of "
                f"{', '.join(f'{k}=DIR' for k in PRETRAINED_KEYS)}, or a bare folder"
            )
        if not folder:
            raise InputError(f"--pretrained {value} names no folder; write --pretrained {key}=DIR")
        if key in pairs:
            raise InputError(f"--pretrained {key}= given twice; give each foundation once")
        pairs[key] = os.path.abspath(os.path.expanduser(folder))
    if bare and (pairs or len(bare) > 1):
        raise InputError(
            "--pretrained takes one bare folder (a model with one foundation: SD-1.5), or "
            "KEY=DIR pairs (e.g. --pretrained siglip=DIR --pretrained sam=DIR); not both, "
            "and not two bare folders"
        )
    return bare[0] if bare else pairs


def absolute_pretrained(pretrained: Pretrained) -> Pretrained:
    """``pretrained`` with every folder absolute (``~`` expanded), its form unchanged."""
    if pretrained is None:
        return None
    if isinstance(pretrained, Mapping):
        return {
            str(key): os.path.abspath(os.path.expanduser(str(folder)))
            for key, folder in pretrained.items()
        }
    return os.path.abspath(os.path.expanduser(os.fspath(pretrained)))


def _architecture_of(name_or_folder: str | os.PathLike[str]) -> str | None:
    """The architecture of a preset, or the one a trained folder's ``config.json`` names
    (None where that cannot be read: the loader then says what is wrong)."""
    name = str(name_or_folder)
    if name in PRESET_ARCHITECTURES:
        return PRESET_ARCHITECTURES[name]
    try:
        raw = json.loads((Path(name).expanduser() / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    found = raw.get("architecture") if isinstance(raw, dict) else None
    return found if isinstance(found, str) else None


def check_pretrained_form(name_or_folder: str | os.PathLike[str], pretrained: Pretrained) -> None:
    """Refuse a ``pretrained`` form the model cannot use, before anything loads.

    A model with one foundation (DiffRIS: ``sd15``) takes a bare folder or ``sd15=DIR``; one
    with several (RSRefSeg: ``siglip``, ``sam``) needs ``KEY=DIR`` pairs. A key the model does
    not load is refused too (it would be a typo or a folder meant for another model). Only names
    and ``config.json`` are read.

    Args:
        name_or_folder: a preset or a trained-model folder (as ``--model`` gives it).
        pretrained: see :data:`Pretrained`.

    Raises:
        InputError: a bare folder for a model with several foundations, or a key it does not
            load.
    """
    if pretrained is None:
        return
    arch = _architecture_of(name_or_folder)
    keys = ARCHITECTURE_FOUNDATIONS.get(arch or "")
    if keys is None:
        return
    for key in keys:
        pretrained_folder(pretrained, key, sole=len(keys) == 1, keys=keys)
    if isinstance(pretrained, Mapping) and (extra := sorted(set(pretrained) - set(keys))):
        raise InputError(
            f"--pretrained {extra[0]}=DIR is not used by model {name_or_folder} (a {arch} model "
            f"loads {', '.join(f'{k}=DIR' for k in keys)}); drop it"
        )


#: Architecture -> the torch-free module holding its training recipe (``RECIPE``, ``LOSSES``).
RECIPES = {
    "diffris": "diffris.models.diffris.recipe",
    "rsrefseg": "diffris.models.rsrefseg.recipe",
}
#: What ``diffris train --loss`` accepts.
LOSS_NAMES = ("bce", "bce+dice")


def _recipe_module(preset: str) -> Any:
    if preset not in PRESET_ARCHITECTURES:
        raise InputError(f"unknown model {preset!r}; choose one of: {', '.join(PRESETS)}")
    return importlib.import_module(RECIPES[PRESET_ARCHITECTURES[preset]])


def training_recipe(preset: str) -> dict[str, Any]:
    """The training defaults of ``preset``'s architecture: TrainConfig field -> value.

    Raises:
        InputError: an unknown preset.
    """
    return dict(_recipe_module(preset).RECIPE)


def model_option_names(preset: str) -> tuple[str, ...]:
    """The model options ``diffris train --model-option`` may set for ``preset``.

    Raises:
        InputError: an unknown preset.
    """
    return tuple(_recipe_module(preset).MODEL_OPTIONS)


def loss_weights(preset: str, loss: str) -> dict[str, float]:
    """``bce_weight`` and ``dice_weight`` of ``--loss bce|bce+dice`` in ``preset``'s recipe.

    Raises:
        InputError: an unknown preset or loss name.
    """
    losses = _recipe_module(preset).LOSSES
    if loss not in losses:
        raise InputError(f"--loss {loss!r} is not one of: {', '.join(losses)}")
    bce, dice = losses[loss]
    return {"bce_weight": float(bce), "dice_weight": float(dice)}


#: Input side of ``--predictions`` scoring and of a model whose size cannot be read.
DEFAULT_INPUT_SIZE = 512


def input_size(name_or_folder: str | os.PathLike[str]) -> int:
    """The network input side a model is evaluated at by default: the size a trained folder was
    trained at (its ``metadata.json``), else its architecture's recipe (DiffRIS 512, RSRefSeg
    1024). Only names and JSON files are read."""
    name = str(name_or_folder)
    if name in PRESET_ARCHITECTURES:
        return int(_recipe_module(name).RECIPE.get("image_size", DEFAULT_INPUT_SIZE))
    folder = Path(name).expanduser()
    try:
        metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        size = metadata["training"]["config"]["image_size"]
        if isinstance(size, int) and size > 0:
            return size
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        pass
    try:
        raw = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        preset = raw["preset"]
        return int(_recipe_module(preset).RECIPE.get("image_size", DEFAULT_INPUT_SIZE))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, InputError):
        return DEFAULT_INPUT_SIZE
