"""Load a model once for a run and name it for the outputs' metadata and the archive ledger."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from diffris.data.prompts import Prompt
from diffris.devices import Precision, resolve_device
from diffris.inference.predictor import ModelPredictor
from diffris.models.build import MODEL_REGISTRY, load_model, resolve_model

_HASH_CHUNK = 1 << 20


def model_identity(name_or_folder: str | os.PathLike[str]) -> str:
    """A short, stable name for a model: ``tiny`` or ``<folder name>@<weights hash>``.

    The hash covers the trained weights and the config, so retraining into the same folder
    changes the identity (and makes the archive reprocess its scenes).

    Raises:
        InputError, InputNotFoundError, WeightsNotFoundError: ``name_or_folder`` is neither a
            preset nor a trained-model folder (see :func:`~diffris.models.build.resolve_model`).
    """
    source = resolve_model(name_or_folder)
    if isinstance(source, str):
        return source
    folder = source
    digest = hashlib.sha256()
    for part in ("config.json", "model.safetensors"):
        path = folder / part
        if path.is_file():
            with path.open("rb") as stream:
                while chunk := stream.read(_HASH_CHUNK):
                    digest.update(chunk)
    return f"{folder.resolve().name}@{digest.hexdigest()[:12]}"


def model_spec(name_or_folder: str | os.PathLike[str]) -> str:
    """A preset name as it is, a trained-model folder as an absolute path.

    Scenes may run in processes started in another folder (dask workers on other machines), so
    a folder given relative to the caller's working folder is resolved where it was typed.
    """
    name = str(name_or_folder)
    return name if name in MODEL_REGISTRY else os.path.abspath(os.path.expanduser(name))


def load_predictor(
    name_or_folder: str | os.PathLike[str],
    prompts: Sequence[Prompt],
    *,
    device: str = "auto",
    precision: Precision = Precision.FP32,
    pretrained: str | os.PathLike[str] | None = None,
    micro_batch: int | None = None,
) -> tuple[ModelPredictor, str]:
    """Load the model on ``device`` and encode ``prompts`` once; returns it and its identity."""
    target = resolve_device(device)
    model = load_model(name_or_folder, pretrained=pretrained, device=target)
    predictor = ModelPredictor(
        model, prompts, device=target, precision=precision, micro_batch=micro_batch
    )
    return predictor, model_identity(name_or_folder)
