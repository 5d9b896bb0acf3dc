"""The frozen backbone: hook placement, removed heads, layout check, reproducible tiny weights."""

import pytest
import torch

from diffris.errors import InputError
from diffris.models.diffris.backbone import FrozenBackbone
from diffris.models.diffris.tiny import (
    TINY_LATENT_CHANNELS,
    build_tiny_components,
    tiny_component_configs,
)
from diffris.models.fingerprint import fingerprint, module_digest


@pytest.fixture(scope="module")
def backbone() -> FrozenBackbone:
    components = build_tiny_components()
    return FrozenBackbone(components.vae, components.unet)


def test_features_are_stage_outputs_before_the_upsampler(backbone: FrozenBackbone) -> None:
    """Each captured map, upsampled, is exactly what the unmodified UNet's up block returns."""
    reference = build_tiny_components().unet.eval()
    outputs: dict[int, torch.Tensor] = {}
    for index, block in enumerate(reference.up_blocks):
        block.register_forward_hook(lambda m, a, out, index=index: outputs.__setitem__(index, out))
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, TINY_LATENT_CHANNELS, 32, 32, generator=generator)
    context = torch.randn(1, 77, 64, generator=generator)
    with torch.no_grad():
        features = backbone.features(latents, context, timestep=1)
        full = reference(latents, torch.tensor([1]), encoder_hidden_states=context).sample
    assert [tuple(f.shape[-2:]) for f in features] == [(4, 4), (8, 8), (16, 16), (32, 32)]
    assert [f.shape[1] for f in features] == list(backbone.feature_channels) == [128, 96, 64, 32]
    for index in range(3):
        upsampled = backbone.unet.up_blocks[index].upsamplers[0](features[index])
        torch.testing.assert_close(upsampled, outputs[index], rtol=0, atol=0)
    torch.testing.assert_close(features[3], outputs[3], rtol=0, atol=0)
    assert full.shape == (
        1,
        TINY_LATENT_CHANNELS,
        32,
        32,
    )  # the reference still has its output head


def test_unused_heads_are_removed(backbone: FrozenBackbone) -> None:
    assert backbone.vae.decoder is None and backbone.vae.post_quant_conv is None
    assert backbone.unet.conv_norm_out is None
    assert isinstance(backbone.unet.conv_out, torch.nn.Identity)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert backbone.latent_factor == 8 and backbone.text_dim == 64


def test_latents_are_scaled_posterior_mean(backbone: FrozenBackbone) -> None:
    pixels = torch.rand(1, 3, 64, 64) * 2 - 1
    unscaled = backbone.encode(pixels, latent_scale=1.0)
    scaled = backbone.encode(pixels, latent_scale=0.18215)
    assert unscaled.shape == (1, TINY_LATENT_CHANNELS, 8, 8)
    torch.testing.assert_close(scaled, unscaled * 0.18215)
    again = backbone.encode(pixels, latent_scale=1.0)  # the mean, not a sample
    assert torch.equal(unscaled, again)


def test_hooks_stay_quiet_outside_feature_calls(backbone: FrozenBackbone) -> None:
    latents = torch.randn(1, TINY_LATENT_CHANNELS, 16, 16)
    with torch.no_grad():
        out = backbone.unet(latents, torch.tensor([1]), encoder_hidden_states=torch.randn(1, 7, 64))
    assert out.sample.shape == (1, 32, 16, 16)  # conv_out is the identity now


def test_unet_without_sd_layout_is_refused() -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    configs = tiny_component_configs()
    unet = configs["unet"] | {
        "down_block_types": configs["unet"]["down_block_types"][:3],
        "up_block_types": configs["unet"]["up_block_types"][1:],
        "block_out_channels": configs["unet"]["block_out_channels"][:3],
    }
    with pytest.raises(InputError, match="has 3 up blocks"):
        FrozenBackbone(AutoencoderKL(**configs["vae"]), UNet2DConditionModel(**unet))


def test_tiny_components_are_bit_reproducible_and_leave_the_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first, second = build_tiny_components(), build_tiny_components()
    assert torch.equal(torch.random.get_rng_state(), state)
    for a, b in zip(first.unet.parameters(), second.unet.parameters(), strict=True):
        assert torch.equal(a, b)

    def identity(modules: list[torch.nn.Module]) -> str:
        return fingerprint([module_digest(module) for module in modules])

    modules = [first.vae, first.unet, first.text_model]
    assert identity(modules) == identity([second.vae, second.unet, second.text_model])
    # a float16 copy of the same weights has the same identity; other weights do not
    half = [m.half() for m in (second.vae, second.unet, second.text_model)]
    assert identity(half) == identity(modules)
    with torch.no_grad():
        list(first.text_model.parameters())[-1].add_(0.5)
    assert identity(modules) != identity(half)


def test_copies_and_threads_capture_their_own_maps(backbone: FrozenBackbone) -> None:
    import copy
    from concurrent.futures import ThreadPoolExecutor

    generator = torch.Generator().manual_seed(3)
    inputs = [
        (
            torch.randn(1, TINY_LATENT_CHANNELS, 16, 16, generator=generator),
            torch.randn(1, 77, 64, generator=generator),
        )
        for _ in range(4)
    ]
    with torch.no_grad():
        expected = [backbone.features(z, c, timestep=1) for z, c in inputs]
        clone = copy.deepcopy(backbone)
        torch.testing.assert_close(clone.features(*inputs[0], timestep=1), expected[0])
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda zc: backbone.features(*zc, timestep=1), inputs))
    for got, want in zip(results, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not backbone.unet.up_blocks[0].upsamplers[0]._forward_pre_hooks  # removed after use
