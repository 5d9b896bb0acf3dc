"""Turn a :class:`~diffris.data.base.Sample` into model input, and batch such inputs.

There is deliberately **no** augmentation here: no flips, rotations or crops. Referring
expressions carry geometry ("the building on the left", "the second ship from the top"), so a
flipped image would no longer match its sentence and the mask would teach the wrong object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from diffris.data.base import Sample
from diffris.data.masks import resize_mask_nearest
from diffris.models.preprocessing import check_input_size, to_model_range


class ResizeToModel:
    """Resize a sample to the model's square input and normalise the image to [-1, 1].

    The image is resized with PIL's bilinear filter (antialiased when shrinking, as the reference
    loaders' torchvision ``Resize`` on PIL images); the mask with nearest neighbour
    (:func:`~diffris.data.masks.resize_mask_nearest`, the same resize the INPUT-resolution
    metrics apply to the ground truth).

    Args:
        size: side S of the square input, in pixels; a multiple of 64.
        keep_original_mask: also return the mask at the original size (needed to score at
            :attr:`~diffris.eval.metrics.Resolution.ORIGINAL` resolution).

    Raises:
        InputError: ``size`` is not a positive multiple of 64.
    """

    def __init__(self, size: int = 512, *, keep_original_mask: bool = False) -> None:
        check_input_size(size, size)
        self.size = size
        self.keep_original_mask = keep_original_mask

    def __call__(self, sample: Sample) -> dict[str, Any]:
        """Model input for one sample.

        Returns:
            ``pixels``: (3, S, S) float32 in [-1, 1]; ``mask``: (1, S, S) float32 in {0, 1};
            ``sentence``: str; ``index``: int, the sample's position in its dataset; and, if
            asked, ``original_mask``: (H, W) bool at the image's original size.
        """
        resized = Image.fromarray(sample.image).resize(
            (self.size, self.size), Image.Resampling.BILINEAR
        )
        pixels = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)
        mask = resize_mask_nearest(sample.mask, self.size)
        output: dict[str, Any] = {
            "pixels": to_model_range(pixels).contiguous(),
            "mask": torch.from_numpy(mask.astype(np.float32))[None],
            "sentence": sample.sentence,
            "index": sample.meta.index,
        }
        if self.keep_original_mask:
            output["original_mask"] = torch.from_numpy(sample.mask.copy())
        return output

    def __repr__(self) -> str:
        return f"ResizeToModel(size={self.size}, keep_original_mask={self.keep_original_mask})"


#: Keys kept as lists even when their tensors happen to share a shape.
_LISTED = frozenset({"original_mask", "sentence"})


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`ResizeToModel` outputs for a ``DataLoader`` (``collate_fn=collate``).

    ``pixels`` and ``mask`` are stacked ((B, 3, S, S), (B, 1, S, S)); ``index`` becomes a (B,)
    int64 tensor; ``sentence`` and ``original_mask`` (sizes differ between images) stay lists.
    Other keys are stacked if they are tensors of one shape, else kept as lists.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    keys = batch[0].keys()
    result: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in batch]
        first = values[0]
        if key in _LISTED:
            result[key] = list(values)
        elif isinstance(first, torch.Tensor) and all(v.shape == first.shape for v in values):
            result[key] = torch.stack(values)
        elif isinstance(first, int) and not isinstance(first, bool):
            result[key] = torch.tensor(values, dtype=torch.int64)
        else:
            result[key] = list(values)
    return result
