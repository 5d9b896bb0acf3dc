"""The default inference path (channels_last on a CPU) gives the contiguous fp32 path's outputs."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from diffris.data.prompts import Prompt
from diffris.inference.fast_path import prepare_for_inference
from diffris.inference.predictor import ModelPredictor
from diffris.models.loading import load_model

CPU = torch.device("cpu")
SCENE = Path(__file__).resolve().parents[2] / "examples" / "scene.tif"
PROMPTS = [Prompt(id="a", text="the buildings"), Prompt(id="b", text="the road through the field")]


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    """A real 512² RGB tile of the example scene, (1, 3, 512, 512) uint8."""
    with rasterio.open(SCENE) as scene:
        return scene.read(window=Window(768, 768, 512, 512))[None]


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1]


def test_default_path_equals_contiguous_fp32_on_a_real_tile(model_preset, tile):
    reference_model = load_model(model_preset)  # as built: contiguous fp32
    assert all(w.is_contiguous() for w in _conv_weights(reference_model))
    with torch.inference_mode():
        pixels = reference_model.preprocess(torch.from_numpy(tile))
        text = reference_model.encode_text([p.text for p in PROMPTS])
        image = reference_model.encode_image(pixels.expand(len(PROMPTS), -1, -1, -1))
        expected = torch.sigmoid(reference_model.decode(image, text))[:, 0].numpy()

    predictor = ModelPredictor(load_model(model_preset), PROMPTS, device=CPU)
    got = predictor.predict(tile)[0]
    # the default really is the other layout, not the reference path again
    weights = _conv_weights(predictor.model)
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not all(w.is_contiguous() for w in weights)
    assert got.shape == expected.shape == (2, 512, 512)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.abs(expected[0] - expected[1]).max() > 1e-3  # the prompts give different maps


def test_preparing_keeps_every_weight_value(model_preset):
    model = load_model(model_preset)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    prepared = prepare_for_inference(model, CPU)
    assert prepared is model and not prepared.training
    after = prepared.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], value) for name, value in before.items())
