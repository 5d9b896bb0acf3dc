"""The model predictor's caching contract, counted on the real tiny model."""

import numpy as np
import pytest
import torch

from diffris.data.prompts import Prompt
from diffris.devices import Precision
from diffris.inference.predictor import ModelPredictor
from diffris.inference.segment import SegmentOptions, segment_scene
from diffris.models.build import load_model
from tests.inference.scenes import position_scene


class Counted:
    """Counts calls of a bound method and the batch rows it saw, then calls it."""

    def __init__(self, method):
        self.method, self.calls, self.rows = method, 0, 0

    def __call__(self, batch, *args, **kwargs):
        self.calls += 1
        self.rows += len(batch)
        return self.method(batch, *args, **kwargs)


@pytest.fixture(scope="module")
def model():
    return load_model("tiny")


@pytest.mark.parametrize("prompt_count", [1, 3])
def test_text_once_per_prompt_and_vae_once_per_tile(tmp_path, model, prompt_count):
    prompts = [Prompt(id=f"p{i}", text=f"the thing number {i}") for i in range(prompt_count)]
    encode_text = model.encode_text = Counted(model.encode_text)
    encode_image = model.encode_image = Counted(model.encode_image)
    try:
        predictor = ModelPredictor(model, prompts, device=torch.device("cpu"), pair_batch=2)
        scene = position_scene(tmp_path / "scene.tif", 300, 200)
        result = segment_scene(
            scene,
            tmp_path / "m.tif",
            predictor,
            prompts,
            SegmentOptions(tile=128, overlap=32, batch_size=3),
            model_id="tiny",
        )
    finally:
        del model.encode_text, model.encode_image
    assert (encode_text.calls, encode_text.rows) == (1, prompt_count)
    assert encode_image.rows == result.tiles  # one VAE pass per tile, whatever the prompts
    assert encode_image.calls == -(-result.tiles // 3)


def test_probabilities_do_not_depend_on_batching(model):
    prompts = [Prompt(id="a", text="the red roofs"), Prompt(id="b", text="the ponds")]
    tiles = np.random.default_rng(0).integers(0, 256, (3, 3, 128, 128), dtype=np.uint8)
    one = ModelPredictor(model, prompts, device=torch.device("cpu"), pair_batch=1)
    many = ModelPredictor(model, prompts, device=torch.device("cpu"), pair_batch=6)
    together = many.predict(tiles)
    apart = np.concatenate([one.predict(tiles[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 2, 128, 128)
    np.testing.assert_allclose(together, apart, atol=1e-5)
    assert not np.allclose(together[:, 0], together[:, 1])  # the prompts give different maps


def test_bf16_runs_and_stays_close_to_fp32(model):
    prompts = [Prompt(id="a", text="the red roofs")]
    tiles = np.random.default_rng(1).integers(0, 256, (1, 3, 128, 128), dtype=np.uint8)
    fp32 = ModelPredictor(model, prompts, device=torch.device("cpu")).predict(tiles)
    bf16 = ModelPredictor(
        model, prompts, device=torch.device("cpu"), precision=Precision.BF16
    ).predict(tiles)
    assert bf16.dtype == np.float32 and np.abs(bf16 - fp32).max() < 0.1
