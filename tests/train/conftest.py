"""Fixtures of the training tests."""

from pathlib import Path

import pytest

from tests.train.helpers import write_small_dataset


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-sample synthetic dataset (RISBench layout, 128² px), written once per session."""
    return write_small_dataset(tmp_path_factory.mktemp("synthetic") / "risbench")
