"""Fixtures shared by the archive tests."""

import os

import pytest
import torch


@pytest.fixture
def restore_threads(monkeypatch):
    """InlineBackend(threads=1) caps this process; undo it after the test."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
