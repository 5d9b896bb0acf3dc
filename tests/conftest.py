"""Shared test set-up: keep torch to one thread per process so parallel tests don't fight."""

import logging
import os
from collections.abc import Callable, Iterator

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

#: One CPU preset per architecture: the data-path tests run once for each (``model_preset``).
MODEL_PRESETS = ("tiny", "rsrefseg-tiny")


@pytest.fixture(scope="session", params=MODEL_PRESETS)
def model_preset(request: pytest.FixtureRequest) -> str:
    """The preset name of each architecture in turn (``tiny``, ``rsrefseg-tiny``)."""
    return request.param


@pytest.fixture(scope="session", autouse=True)
def _private_diffris_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """diffris' cache folder (fingerprint cache, models) in a temporary folder, never the
    user's own ``~/.cache/diffris``; a test that needs another sets ``DIFFRIS_HOME`` itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFRIS_HOME", str(tmp_path_factory.mktemp("diffris-home")))
        yield


@pytest.fixture(autouse=True)
def _restore_diffris_logging() -> Iterator[None]:
    """The ``diffris`` logger as it was before each test: a CLI invocation installs its own
    handlers and stops propagation, which would hide later tests' records from ``caplog``."""
    logger = logging.getLogger("diffris")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture
def set_umask() -> Iterator[Callable[[int], int]]:
    """``os.umask`` for one test; the process umask is restored afterwards."""
    previous = os.umask(0o077)
    os.umask(previous)
    yield os.umask
    os.umask(previous)
