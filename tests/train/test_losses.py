"""BCE + Dice per sample."""

import math

import pytest
import torch

from diffris.train.losses import bce_loss, dice_loss, segmentation_loss


def test_perfect_and_inverted_predictions() -> None:
    masks = torch.zeros(2, 1, 8, 8)
    masks[0, 0, 2:6, 2:6] = 1  # 16 px object; sample 1 has no object
    confident = (masks * 2 - 1) * 50  # logits of ±50
    assert dice_loss(confident, masks).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert bce_loss(confident, masks).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    wrong = -confident
    assert dice_loss(wrong, masks)[0].item() == pytest.approx(1 - 1 / 65, abs=1e-6)
    assert bce_loss(wrong, masks)[0].item() == pytest.approx(50.0, rel=1e-4)


def test_losses_are_per_sample_and_weighted() -> None:
    logits = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    masks = (torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    both = segmentation_loss(logits, masks)
    assert both.shape == (3,)
    single = segmentation_loss(logits[1:2], masks[1:2])
    assert single.item() == pytest.approx(both[1].item(), rel=1e-6)
    only_bce = segmentation_loss(logits, masks, bce_weight=2.0, dice_weight=0.0)
    assert torch.allclose(only_bce, 2 * bce_loss(logits, masks))
    # at logits 0 the BCE is log 2 per pixel
    assert bce_loss(torch.zeros(1, 1, 4, 4), masks[:1, :, :4, :4]).item() == pytest.approx(
        math.log(2)
    )
    with pytest.raises(ValueError, match="differ"):
        segmentation_loss(logits, masks[:, :, :8])
