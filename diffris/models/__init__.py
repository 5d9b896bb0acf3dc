"""Referring-segmentation models: DiffRIS and RSRefSeg behind one interface, under one registry.

- :mod:`diffris.models.interface`: the :class:`ReferringModel` protocol everything else uses;
- :mod:`diffris.models.registry`: presets of every architecture (``build_model``);
- :mod:`diffris.models.checkpoint`: trained-model folders (``save_trained``, ``load_trained``);
- :mod:`diffris.models.loading`: ``load_model`` (a preset or a folder, ready to run);
- one folder per architecture: :mod:`diffris.models.diffris`, :mod:`diffris.models.rsrefseg`.

The names below are imported lazily, so that ``import diffris.models.names`` (or the CLI's
``--help``) does not pay for torch model code it does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffris.models.checkpoint import load_trained, save_trained
    from diffris.models.diffris.build import build_diffris
    from diffris.models.diffris.model import BackboneIdentity, DiffRIS, DiffRISConfig, TextFeatures
    from diffris.models.diffris.text_encoder import TokenBatch
    from diffris.models.interface import ReferringModel
    from diffris.models.loading import load_model
    from diffris.models.registry import MODEL_REGISTRY, build_model

_EXPORTS = {
    "MODEL_REGISTRY": "registry",
    "build_model": "registry",
    "build_diffris": "diffris.build",
    "load_model": "loading",
    "load_trained": "checkpoint",
    "save_trained": "checkpoint",
    "ReferringModel": "interface",
    "BackboneIdentity": "diffris.model",
    "DiffRIS": "diffris.model",
    "DiffRISConfig": "diffris.model",
    "TextFeatures": "diffris.model",
    "TokenBatch": "diffris.text_encoder",
}

__all__ = [
    "MODEL_REGISTRY",
    "BackboneIdentity",
    "DiffRIS",
    "DiffRISConfig",
    "ReferringModel",
    "TextFeatures",
    "TokenBatch",
    "build_diffris",
    "build_model",
    "load_model",
    "load_trained",
    "save_trained",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
