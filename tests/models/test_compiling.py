"""``compile_parts``: compiled models give the same probabilities and keep their state names.

Dynamo's ``eager`` backend traces exactly what inductor would compile (so a hook traced into a
compiled part, or a part that cannot be traced, shows here) without a C++ compiler's minutes.
"""

import numpy as np
import pytest
import torch

from diffris.data.prompts import Prompt
from diffris.inference.predictor import ModelPredictor
from diffris.models.compiling import compile_parts
from diffris.models.loading import load_model


@pytest.mark.slow
def test_compiled_parts_give_the_same_probabilities_and_state_names(model_preset):
    model = load_model(model_preset)
    prompts = [Prompt(id="a", text="the red roofs"), Prompt(id="b", text="the ponds")]
    tiles = np.random.default_rng(0).integers(0, 256, (3, 3, 64, 64), dtype=np.uint8)
    cpu = torch.device("cpu")
    expected = ModelPredictor(model, prompts, device=cpu, micro_batch=2).predict(tiles)
    names = sorted(model.trainable_state_dict())
    compiled = compile_parts(model, backend="eager", dynamic=False)
    got = ModelPredictor(model, prompts, device=cpu, micro_batch=2).predict(tiles)
    assert compiled and all(model.get_submodule(name)._compiled_call_impl for name in compiled)
    assert np.array_equal(got, expected)
    assert sorted(model.trainable_state_dict()) == names
