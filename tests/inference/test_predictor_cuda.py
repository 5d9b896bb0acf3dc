"""The tile predictor's CUDA path (skipped where no CUDA device is present, never faked).

On CUDA the predictor runs the model channels-last, uploads tiles from pinned memory and copies
probabilities back on a side stream; these check that it gives the CPU's probabilities and waits
for the device once per call.
"""

import warnings

import numpy as np
import pytest
import torch

from diffris.data.prompts import Prompt
from diffris.inference.predictor import ModelPredictor
from diffris.models.loading import load_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

PROMPTS = [Prompt(id="a", text="the red roofs"), Prompt(id="b", text="the ponds")]


@pytest.fixture
def tiles():
    return np.random.default_rng(0).integers(0, 256, (3, 3, 128, 128), dtype=np.uint8)


def test_cuda_probabilities_match_the_cpu_ones(model_preset, tiles):
    cpu = ModelPredictor(load_model(model_preset), PROMPTS, device=torch.device("cpu"))
    cuda = ModelPredictor(
        load_model(model_preset), PROMPTS, device=torch.device("cuda"), micro_batch=2
    )
    expected, got = cpu.predict(tiles), cuda.predict(tiles)
    assert got.shape == expected.shape == (3, 2, 128, 128) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-3


def test_one_predict_call_waits_for_the_device_once(model_preset, tiles):
    predictor = ModelPredictor(
        load_model(model_preset), PROMPTS, device=torch.device("cuda"), micro_batch=2
    )
    predictor.predict(tiles)  # first-call costs (cuDNN, allocator) out of the count
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            predictor.predict(tiles)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 1, syncs
