"""Load a model once for a run and name it for the outputs' metadata and the archive ledger."""

from __future__ import annotations

import os
from collections.abc import Sequence

from diffris.data.prompts import Prompt
from diffris.devices import Precision, resolve_device
from diffris.inference.feature_cache import FeatureCacheOptions
from diffris.inference.predictor import ModelPredictor
from diffris.models.loading import load_model
from diffris.models.names import Pretrained, model_identity


def load_predictor(
    name_or_folder: str | os.PathLike[str],
    prompts: Sequence[Prompt],
    *,
    device: str = "auto",
    precision: Precision = Precision.FP32,
    pretrained: Pretrained = None,
    micro_batch: int | None = None,
    feature_cache: FeatureCacheOptions | None = None,
) -> tuple[ModelPredictor, str]:
    """Load the model on ``device`` and encode ``prompts`` once; returns it and its identity.

    ``pretrained`` names the frozen foundations' folders (see :data:`~diffris.models.names.
    Pretrained`), passed to the model's loader as given. ``feature_cache`` keeps the tiles'
    image features between runs (``--feature-cache``).
    """
    target = resolve_device(device)
    model = load_model(name_or_folder, pretrained=pretrained, device=target)
    predictor = ModelPredictor(
        model,
        prompts,
        device=target,
        precision=precision,
        micro_batch=micro_batch,
        feature_cache=feature_cache,
    )
    return predictor, model_identity(name_or_folder)
