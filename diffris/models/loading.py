"""``load_model``: what ``--model`` names (a preset or a trained folder), ready to run."""

from __future__ import annotations

import os

import torch

from diffris.devices import resolve_device
from diffris.models.checkpoint import load_trained
from diffris.models.interface import ReferringModel
from diffris.models.names import Pretrained, resolve_model
from diffris.models.registry import PRESET_HEAD_SEED, build_model


def load_model(
    name_or_folder: str | os.PathLike[str],
    *,
    pretrained: Pretrained = None,
    device: str | torch.device | None = None,
) -> ReferringModel:
    """A preset (untrained heads) or a trained-model folder of any architecture, in eval mode.

    A preset's untrained heads are initialised from :data:`~diffris.models.registry.
    PRESET_HEAD_SEED`, so that loading ``tiny`` twice gives the same model (and the same
    outputs) in every process.

    Args:
        name_or_folder: a preset (``tiny``, ``sd15``, ``rsrefseg-tiny``, ...), or a folder
            written by :func:`diffris.models.checkpoint.save_trained`.
        pretrained: folders of the frozen foundations (see :data:`~diffris.models.names.
            Pretrained`).
        device: ``cpu``, ``cuda:N``, ``auto`` or None (the CPU).

    Raises:
        InputError, InputNotFoundError: see :func:`~diffris.models.names.resolve_model`.
        WeightsNotFoundError: the folder is not a trained model, or backbone weights are missing.
        CheckpointMismatchError: the trained weights do not fit the model.
    """
    target = torch.device("cpu") if device is None else resolve_device(str(device))
    source = resolve_model(name_or_folder)
    if isinstance(source, str):
        model = build_model(source, pretrained=pretrained, seed=PRESET_HEAD_SEED)
    else:
        model = load_trained(source, pretrained=pretrained)
    return model.to(target).eval()
