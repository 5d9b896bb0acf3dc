"""The default inference path (channels_last on a CPU) gives the contiguous fp32 path's outputs;
bf16 runs on a CPU for both models, and warns where it is slower."""

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from diffris.data.prompts import Prompt
from diffris.devices import Precision
from diffris.inference.predictor import ModelPredictor
from diffris.models.fast_path import native_bf16, prepare_for_inference, warn_if_slower
from diffris.models.fingerprint import module_digest
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


@pytest.fixture(scope="module")
def expected(model_preset, tile) -> np.ndarray:
    """(P, 512, 512) probabilities of the model as built: contiguous fp32, no predictor."""
    reference_model = load_model(model_preset)
    assert all(w.is_contiguous() for w in _conv_weights(reference_model))
    with torch.inference_mode():
        pixels = reference_model.preprocess(torch.from_numpy(tile))
        text = reference_model.encode_text([p.text for p in PROMPTS])
        image = reference_model.encode_image(pixels.expand(len(PROMPTS), -1, -1, -1))
        return torch.sigmoid(reference_model.decode(image, text))[:, 0].numpy()


def test_default_path_equals_contiguous_fp32_on_a_real_tile(model_preset, tile, expected):
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
    digest = module_digest(model)  # what backbone fingerprints hash
    prepared = prepare_for_inference(model, CPU)
    assert module_digest(prepared) == digest
    assert prepared is model and not prepared.training
    after = prepared.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], value) for name, value in before.items())


def test_bf16_runs_on_a_cpu_close_to_fp32(model_preset, tile, expected):
    predictor = ModelPredictor(
        load_model(model_preset), PROMPTS, device=CPU, precision=Precision.BF16
    )
    got = predictor.predict(tile)[0]
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert 0 < np.abs(got - expected).max() < 1e-2  # autocast really ran, and stays close


def test_bf16_warns_only_on_a_cpu_without_bf16_instructions(caplog):
    flags = set()
    if Path("/proc/cpuinfo").is_file():
        flags = set(" ".join(Path("/proc/cpuinfo").read_text().split("\n")).split())
    if flags:
        assert native_bf16(CPU) == bool(flags & {"avx512_bf16", "amx_bf16"})
    with caplog.at_level(logging.WARNING, logger="diffris.models.fast_path"):
        warn_if_slower(CPU, Precision.FP32)
        warn_if_slower(CPU, Precision.BF16)
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == (1 if native_bf16(CPU) is False else 0)
    assert all("--precision fp32" in message for message in warned)
