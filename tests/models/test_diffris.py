"""The composed DiffRIS model on the tiny preset: shapes, errors, gradients, modes, determinism."""

import pytest
import torch

from diffris.errors import InputError
from diffris.models.diffris.model import DiffRIS
from diffris.models.diffris.tiny import TINY_LATENT_CHANNELS


@pytest.mark.parametrize("size", [512, 256])
def test_shapes_at_every_stage(tiny_model: DiffRIS, size: int) -> None:
    images = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    pixels = tiny_model.preprocess(images)
    assert pixels.dtype == torch.float32 and pixels.min() >= -1 and pixels.max() <= 1
    with torch.no_grad():
        latents = tiny_model.encode_image(pixels)
        text = tiny_model.encode_text(["the large building"])
        features = tiny_model.image_features(latents, text)
        logits = tiny_model.decode(latents, text)
    assert latents.shape == (1, TINY_LATENT_CHANNELS, size // 8, size // 8)
    channels = tiny_model.config.backbone.feature_channels
    assert [tuple(f.shape) for f in features] == [
        (1, channels[k], size // stride, size // stride) for k, stride in enumerate((64, 32, 16, 8))
    ]
    assert logits.shape == (1, 1, size, size) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_input_not_multiple_of_64_is_refused(tiny_model: DiffRIS) -> None:
    with pytest.raises(InputError, match="480 px is not a multiple of 64"):
        tiny_model.preprocess(torch.zeros(1, 3, 480, 480, dtype=torch.uint8))
    with pytest.raises(InputError, match="multiple of 64"):
        tiny_model(torch.zeros(1, 3, 256, 480), ["a road"])
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        tiny_model.preprocess(torch.zeros(3, 256, 256, dtype=torch.uint8))


def test_prompt_count_must_match_images(tiny_model: DiffRIS, pixels_256: torch.Tensor) -> None:
    with torch.no_grad():
        one = tiny_model(pixels_256, ["a road"])  # one prompt serves every image
        both = tiny_model(pixels_256, ["a road", "a road"])
        assert torch.equal(one, both)
        with pytest.raises(InputError, match="3 prompts for 2 images"):
            tiny_model(pixels_256, ["a", "b", "c"])


def test_only_heads_get_gradients_and_they_flow_through_the_unet(pixels_256: torch.Tensor) -> None:
    from diffris.models.diffris.build import build_diffris

    torch.manual_seed(0)
    model = build_diffris("tiny").train()
    logits = model(pixels_256[:1], ["the building on the left"])
    target = (torch.rand_like(logits) > 0.5).float()
    torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
    trainable = {id(p) for p in model.trainable_parameters()}
    frozen_with_grad = [
        n
        for n, p in model.named_parameters()
        if id(p) not in trainable and (p.grad is not None or p.requires_grad)
    ]
    assert frozen_with_grad == []
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.cp_adapter.parameters())

    # the UNet path alone (no decoder) still carries gradient back into the CP-adapter
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        latents = model.encode_image(pixels_256[:1])
    text = model.encode_text(["the building on the left"])
    features = model.image_features(latents, text)
    sum(f.square().mean() for f in features).backward()
    adapter_grads = [p.grad for p in model.cp_adapter.parameters() if p.grad is not None]
    assert adapter_grads and any(g.abs().sum() > 0 for g in adapter_grads)
    assert all(p.grad is None for p in model.decoder.parameters())


def test_train_keeps_frozen_parts_in_eval(tiny_model: DiffRIS) -> None:
    try:
        tiny_model.train()
        assert tiny_model.training and tiny_model.cp_adapter.training
        assert tiny_model.decoder.training
        for part in (tiny_model.backbone, tiny_model.text_encoder):
            assert not any(module.training for module in part.modules())
            assert not any(param.requires_grad for param in part.parameters())
    finally:
        tiny_model.eval()


def test_eval_is_deterministic(tiny_model: DiffRIS, pixels_256: torch.Tensor) -> None:
    with torch.no_grad():
        first = tiny_model(pixels_256, ["a road", "the river"])
        second = tiny_model(pixels_256, ["a road", "the river"])
        single = tiny_model(pixels_256[1:], ["the river"])
    assert torch.equal(first, second)
    torch.testing.assert_close(first[1:], single, rtol=1e-4, atol=1e-4)  # batch-independent


def test_cached_steps_equal_forward(tiny_model: DiffRIS, pixels_256: torch.Tensor) -> None:
    """What the tile predictor does (text once, latent once, pairs) equals a plain forward."""
    with torch.no_grad():
        text = tiny_model.encode_text(["a road", "the river", "trees"])
        latents = tiny_model.encode_image(pixels_256)
        tiles = torch.arange(2).repeat_interleave(3)
        prompts = torch.arange(3).repeat(2)
        paired = tiny_model.decode(latents.index_select(0, tiles), text.index_select(prompts))
        direct = tiny_model(pixels_256[1:], ["trees"])
    torch.testing.assert_close(paired[5:], direct, rtol=1e-4, atol=1e-4)


def test_postprocess_and_probabilities(tiny_model: DiffRIS, pixels_256: torch.Tensor) -> None:
    probability = tiny_model.predict_proba(pixels_256[:1], ["a road"])
    assert probability.shape == (1, 1, 256, 256)
    assert probability.min() >= 0 and probability.max() <= 1
    logits = torch.tensor([[-1.0, 0.1, 2.0]])
    assert tiny_model.postprocess(logits).tolist() == [[False, True, True]]
    assert tiny_model.postprocess(logits, threshold=0.8).tolist() == [[False, False, True]]
    with pytest.raises(InputError, match="threshold"):
        tiny_model.postprocess(logits, threshold=1.5)


def test_trainable_state_covers_only_the_heads(tiny_model: DiffRIS) -> None:
    state = tiny_model.trainable_state_dict()
    assert state and all(k.startswith(("cp_adapter.", "decoder.")) for k in state)
    assert tiny_model.trainable_parameter_count() == sum(
        p.numel() for p in [*tiny_model.cp_adapter.parameters(), *tiny_model.decoder.parameters()]
    )
    total = sum(p.numel() for p in tiny_model.parameters())
    assert tiny_model.frozen_parameter_count() + tiny_model.trainable_parameter_count() == total
