"""The model predictor's caching contract, counted on each architecture's real tiny preset."""

import numpy as np
import pytest
import torch

from diffris.data.prompts import Prompt
from diffris.devices import Precision
from diffris.inference.predictor import ModelPredictor
from diffris.inference.segment import SegmentOptions, segment_scene
from diffris.models.loading import load_model
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
def model(model_preset):
    return load_model(model_preset)


@pytest.mark.parametrize("prompt_count", [1, 3])
def test_text_once_per_prompt_and_image_once_per_tile(tmp_path, model, prompt_count):
    prompts = [Prompt(id=f"p{i}", text=f"the thing number {i}") for i in range(prompt_count)]
    encode_text = model.encode_text = Counted(model.encode_text)
    encode_image = model.encode_image = Counted(model.encode_image)
    try:
        predictor = ModelPredictor(model, prompts, device=torch.device("cpu"), micro_batch=2)
        scene = position_scene(tmp_path / "scene.tif", 300, 200)
        result = segment_scene(
            scene,
            tmp_path / "m.tif",
            predictor,
            prompts,
            SegmentOptions(tile=128, overlap=32, batch_size=3),
            model_id=model.config.backbone.preset,
        )
    finally:
        del model.encode_text, model.encode_image
    assert (encode_text.calls, encode_text.rows) == (1, prompt_count)
    # one image encoding per tile whatever the prompts (micro-batches of 2: at most one padded row
    # per batch of 3 tiles)
    batches = -(-result.tiles // 3)
    assert result.tiles <= encode_image.rows <= result.tiles + batches
    assert encode_image.calls == sum(-(-min(3, result.tiles - 3 * b) // 2) for b in range(batches))


@pytest.mark.parametrize("micro_batch", [1, 2])
def test_probabilities_are_bit_identical_however_tiles_are_batched(model, micro_batch):
    prompts = [Prompt(id="a", text="the red roofs"), Prompt(id="b", text="the ponds")]
    tiles = np.random.default_rng(0).integers(0, 256, (3, 3, 128, 128), dtype=np.uint8)
    predictor = ModelPredictor(model, prompts, device=torch.device("cpu"), micro_batch=micro_batch)
    together = predictor.predict(tiles)  # micro-batches of 2: the last one padded
    apart = np.concatenate([predictor.predict(tiles[i : i + 1]) for i in range(3)])
    in_twos = np.concatenate([predictor.predict(tiles[i : i + 2]) for i in range(0, 3, 2)])
    assert together.shape == (3, 2, 128, 128)
    assert np.array_equal(together, apart) and np.array_equal(together, in_twos)
    assert not np.allclose(together[:, 0], together[:, 1])  # the prompts give different maps


def test_bf16_runs_and_stays_close_to_fp32(model):
    prompts = [Prompt(id="a", text="the red roofs")]
    tiles = np.random.default_rng(1).integers(0, 256, (1, 3, 128, 128), dtype=np.uint8)
    fp32 = ModelPredictor(model, prompts, device=torch.device("cpu")).predict(tiles)
    bf16 = ModelPredictor(
        model, prompts, device=torch.device("cpu"), precision=Precision.BF16
    ).predict(tiles)
    assert bf16.dtype == np.float32 and np.abs(bf16 - fp32).max() < 0.1


def test_a_prompt_longer_than_the_text_encoder_reads_is_truncated_with_a_warning(model, caplog):
    long = Prompt(id="long", text=" ".join(["the red roof next to the long road"] * 15))
    short = Prompt(id="short", text="the red roofs")
    with caplog.at_level("WARNING", logger="diffris"):
        predictor = ModelPredictor(model, [short, long], device=torch.device("cpu"))
    assert predictor.text.truncated == [False, True]
    tokens = model.config.max_tokens  # CLIP's 77, SigLIP's 64
    assert f"'long' is longer than the text encoder's {tokens} tokens; truncated" in caplog.text
    assert "'short'" not in caplog.text


def test_k_prompts_in_one_predictor_equal_k_one_prompt_predictors_bit_for_bit(model):
    """The image features cached for K prompts are the ones a one-prompt run computes."""
    prompts = [
        Prompt(id=f"p{i}", text=text) for i, text in enumerate(["roofs", "the ponds", "a road"])
    ]
    tiles = np.random.default_rng(2).integers(0, 256, (2, 3, 128, 128), dtype=np.uint8)
    together = ModelPredictor(model, prompts, device=torch.device("cpu")).predict(tiles)
    alone = [ModelPredictor(model, [p], device=torch.device("cpu")).predict(tiles) for p in prompts]
    assert np.array_equal(together, np.concatenate(alone, axis=1))
