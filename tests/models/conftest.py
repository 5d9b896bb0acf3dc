"""Shared fixtures for the composed-model tests: one tiny DiffRIS per test module."""

from collections.abc import Iterator

import pytest
import torch

from diffris.models.diffris.build import build_diffris
from diffris.models.diffris.model import DiffRIS


@pytest.fixture(scope="module")
def tiny_model() -> Iterator[DiffRIS]:
    """The tiny preset in eval mode, built once per module (tests must not modify it)."""
    torch.manual_seed(0)  # the trainable heads' initialisation
    yield build_diffris("tiny").eval()


@pytest.fixture
def pixels_256() -> torch.Tensor:
    """Two 256² RGB images in [-1, 1], fixed."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8, generator=generator)
    return images.float() / 127.5 - 1.0
