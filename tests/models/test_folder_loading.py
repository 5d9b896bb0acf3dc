"""A Stable Diffusion folder loads quietly into the very model it was saved from, on any CPU."""

import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from diffris.models.diffris.backbone import load_sd_components, save_sd_components
from diffris.models.diffris.tiny import build_tiny_components

# The tiny preset, its copy saved as a folder and loaded back through the sd15 path, and one
# forward of each with the same heads: the outputs must be bit-identical.
_COMPARE_BOTH_PATHS = """
import sys, tempfile, torch
from diffris.models.diffris.backbone import save_sd_components
from diffris.models.diffris.build import build_diffris
from diffris.models.diffris.tiny import build_tiny_components, tiny_head_configs
folder = save_sd_components(build_tiny_components(), tempfile.mkdtemp() + "/sd")
preset = build_diffris("tiny", seed=0).eval()
adapter, decoder = tiny_head_configs()
loaded = build_diffris("sd15", pretrained=folder, cp_adapter=adapter, pcmrd=decoder).eval()
loaded.load_trainable_state_dict(preset.trainable_state_dict())
pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
with torch.no_grad():
    difference = (preset(pixels, ["the roof"]) - loaded(pixels, ["the roof"])).abs().max().item()
print(difference)
sys.exit(0 if difference == 0 else 1)
"""


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sd_components(build_tiny_components(), tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="this torch has no MKL")
def test_folder_model_is_bit_identical_where_mkl_has_no_avx2() -> None:
    # MKL picks its kernels by CPU; without AVX2 (AMD processors, older Intel) its results
    # depend on how the weights are aligned in memory. MKL_ENABLE_INSTRUCTIONS makes this CPU
    # take that path; it is read when MKL starts, hence the fresh process.
    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _COMPARE_BOTH_PATHS],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"max difference {done.stdout.strip()}\n{done.stderr[-2000:]}"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def library_warnings() -> Iterator[list[str]]:
    """Warnings diffusers and transformers log (their own handlers don't propagate)."""
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers")]
    for logger in loggers:
        logger.addHandler(records)
    try:
        yield records.messages
    finally:
        for logger in loggers:
            logger.removeHandler(records)


def test_loading_a_folder_warns_about_nothing(
    tiny_sd_folder: Path, library_warnings: list[str]
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts = load_sd_components(tiny_sd_folder)
    assert parts.unet.dtype == torch.float32
    assert library_warnings == []
    assert not [str(w.message) for w in caught if "accelerate" in str(w.message)]
