"""Shared test set-up: keep torch to one thread per process so parallel tests don't fight."""

import os
from collections.abc import Callable, Iterator

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def set_umask() -> Iterator[Callable[[int], int]]:
    """``os.umask`` for one test; the process umask is restored afterwards."""
    previous = os.umask(0o077)
    os.umask(previous)
    yield os.umask
    os.umask(previous)
