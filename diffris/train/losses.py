"""The training loss: pixel-wise binary cross-entropy plus soft Dice, per sample.

The paper does not name its loss (a choice, MODEL.md): BCE + Dice is the usual pair for one-channel
referring masks; Dice keeps small objects (RISBench has objects of tens of pixels) from being
drowned by the background in the BCE average. Both are computed in float32, also under autocast.

The loss is returned **per sample** so that the trainer can normalise by the global batch
whatever the process count and micro-batch split: the optimiser sees the mean over the 32 samples
of a global batch, not a mean of means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Added to numerator and denominator of the Dice ratio: an empty mask predicted empty scores 1.
DICE_SMOOTH = 1.0


def dice_loss(logits: Tensor, masks: Tensor, smooth: float = DICE_SMOOTH) -> Tensor:
    """Soft Dice loss per sample: 1 - (2·Σ p·g + s) / (Σ p + Σ g + s), p = sigmoid(logits).

    Args:
        logits: (B, 1, H, W) mask logits.
        masks: (B, 1, H, W) ground truth in {0, 1}.
        smooth: the smoothing term s, in pixels.

    Returns:
        (B,) float32 losses in [0, 1].
    """
    probs = torch.sigmoid(logits.float()).flatten(1)
    truth = masks.float().flatten(1)
    overlap = (probs * truth).sum(dim=1)
    total = probs.sum(dim=1) + truth.sum(dim=1)
    return 1.0 - (2.0 * overlap + smooth) / (total + smooth)


def bce_loss(logits: Tensor, masks: Tensor) -> Tensor:
    """Binary cross-entropy with logits, averaged over the pixels of each sample.

    Args:
        logits: (B, 1, H, W) mask logits.
        masks: (B, 1, H, W) ground truth in {0, 1}.

    Returns:
        (B,) float32 losses (nats per pixel).
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), masks.float(), reduction="none")
    return per_pixel.flatten(1).mean(dim=1)


def segmentation_loss(
    logits: Tensor, masks: Tensor, *, bce_weight: float = 1.0, dice_weight: float = 1.0
) -> Tensor:
    """``bce_weight`` · BCE + ``dice_weight`` · Dice, per sample.

    Args:
        logits: (B, 1, H, W) mask logits at the input resolution.
        masks: (B, 1, H, W) ground truth in {0, 1}, same size.

    Returns:
        (B,) float32 losses.

    Raises:
        ValueError: the shapes differ.
    """
    if logits.shape != masks.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and masks {tuple(masks.shape)} differ")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        loss = torch.zeros(logits.shape[0], device=logits.device)
        if bce_weight:
            loss = loss + bce_weight * bce_loss(logits, masks)
        if dice_weight:
            loss = loss + dice_weight * dice_loss(logits, masks)
        return loss
