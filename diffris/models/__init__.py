"""The DiffRIS model: frozen Stable Diffusion + CLIP backbone, trainable CP-adapter and PCMRD.

The names below are imported lazily, so that ``import diffris.models.preprocessing`` (or the
CLI's ``--help``) does not pay for torch model code it does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffris.models.build import MODEL_REGISTRY, build_diffris, load_model
    from diffris.models.checkpoint import load_trained, save_trained
    from diffris.models.diffris import BackboneIdentity, DiffRIS, DiffRISConfig, TextFeatures
    from diffris.models.text_encoder import TokenBatch

_EXPORTS = {
    "MODEL_REGISTRY": "build",
    "build_diffris": "build",
    "load_model": "build",
    "load_trained": "checkpoint",
    "save_trained": "checkpoint",
    "BackboneIdentity": "diffris",
    "DiffRIS": "diffris",
    "DiffRISConfig": "diffris",
    "TextFeatures": "diffris",
    "TokenBatch": "text_encoder",
}

__all__ = [
    "MODEL_REGISTRY",
    "BackboneIdentity",
    "DiffRIS",
    "DiffRISConfig",
    "TextFeatures",
    "TokenBatch",
    "build_diffris",
    "load_model",
    "load_trained",
    "save_trained",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
