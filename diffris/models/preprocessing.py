"""Pixel conventions shared by the model, the tile predictor, training and evaluation.

Kept in one place so that inference and training cannot drift apart: images enter the model as
float tensors in [-1, 1], with height and width multiples of :data:`SIZE_MULTIPLE`.
"""

from __future__ import annotations

import torch

from diffris.errors import InputError

#: The UNet's coarsest decoder stage has stride 64, so inputs must be multiples of 64 px.
SIZE_MULTIPLE = 64


def check_input_size(height: int, width: int) -> None:
    """Raise :class:`InputError` unless both sides are positive multiples of 64 px."""
    for name, value in (("height", height), ("width", width)):
        if value <= 0 or value % SIZE_MULTIPLE:
            nearest = max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)
            raise InputError(
                f"input {name} {value} px is not a multiple of {SIZE_MULTIPLE}; "
                f"resize or tile to e.g. {nearest}"
            )


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """Map 8-bit images to the model's input range.

    Args:
        images: (B, 3, H, W) uint8, or float with values in [0, 255].

    Returns:
        (B, 3, H, W) float32 in [-1, 1].
    """
    return images.to(torch.float32) / 127.5 - 1.0
