"""Shared fixtures of the RSRefSeg tests: one tiny model per test module."""

from collections.abc import Iterator

import pytest
import torch

from diffris.models.rsrefseg.build import build_rsrefseg
from diffris.models.rsrefseg.model import RSRefSeg


@pytest.fixture(scope="module")
def rsr_tiny() -> Iterator[RSRefSeg]:
    """``rsrefseg-tiny`` in eval mode with seed-0 heads (tests must not modify it)."""
    yield build_rsrefseg("rsrefseg-tiny", seed=0).eval()


@pytest.fixture
def pixels_128() -> torch.Tensor:
    """Two different 128² RGB images in [-1, 1], fixed."""
    generator = torch.Generator().manual_seed(3)
    return torch.rand((2, 3, 128, 128), generator=generator) * 2 - 1
