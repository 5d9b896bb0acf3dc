"""The ``tiny`` preset: DiffRIS's classes at small sizes, with conditioned random frozen weights.

The same classes as ``sd15`` (``AutoencoderKL``, ``UNet2DConditionModel``, ``CLIPTextModel``, the
real CLIP tokenizer) with random weights from a fixed seed, small enough for a 512² tile to run in
well under a second on a CPU. Every test uses it.
"""

from __future__ import annotations

from typing import Any

import torch

from diffris.models.diffris.backbone import SDComponents
from diffris.models.diffris.components import components_from_configs
from diffris.models.diffris.cp_adapter import CPAdapterConfig
from diffris.models.diffris.pcmrd import PCMRDConfig

TINY_SEED = 20240501
#: Latent channels of the tiny VAE (SD-1.5 has 4). A random encoder squeezing each 8×8×3 patch
#: into 4 numbers keeps little of it: a linear probe of object class from 16 channels had ~3× the
#: class mIoU of 4, and training on synthetic data scored a few mIoU points higher.
TINY_LATENT_CHANNELS = 16
#: Gain of the last layer of every residual branch (ResNet ``conv2``, Transformer ``proj_out``)
#: of the tiny VAE and UNet; see :func:`condition_random_weights`.
TINY_RESIDUAL_GAIN = 0.1
#: Spread of the tiny text model's position embeddings relative to its (unit) word embeddings.
TINY_POSITION_GAIN = 0.1
#: The tiny VAE's posterior mean is scaled so that ``mean * 0.18215`` has unit-order spread on
#: ordinary images, as Stable Diffusion 1.5's latents do (their 1/0.18215 ≈ 5.49 rescaling).
TINY_LATENT_GAIN = 1.0 / 0.18215


def tiny_component_configs() -> dict[str, dict[str, Any]]:
    """Constructor arguments of the tiny preset's VAE, UNet and CLIP text model.

    The VAE has four blocks, so it still downsamples by 8 (a 512 tile -> 64×64 latent), with
    8 channels at full resolution and no mid-block attention (4,096 tokens would dominate the
    time), and a 16-channel latent (:data:`TINY_LATENT_CHANNELS`). The UNet has four levels,
    cross-attention only at the two coarsest (plus its mid block), and small widths. The text model is narrow but keeps CLIP's 49,408-token
    vocabulary and 77 positions, so the real tokenizer fits.
    """
    return {
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "block_out_channels": [8, 16, 32, 32],
            "layers_per_block": 1,
            "latent_channels": TINY_LATENT_CHANNELS,
            "norm_num_groups": 8,
            "sample_size": 512,
            "mid_block_add_attention": False,
        },
        "unet": {
            "sample_size": 64,
            "in_channels": TINY_LATENT_CHANNELS,
            "out_channels": TINY_LATENT_CHANNELS,
            "down_block_types": [
                "DownBlock2D",
                "DownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
            ],
            "up_block_types": [
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "UpBlock2D",
                "UpBlock2D",
            ],
            "block_out_channels": [32, 64, 96, 128],
            "layers_per_block": 1,
            "cross_attention_dim": 64,
            "attention_head_dim": 4,
            "norm_num_groups": 8,
        },
        "text": {
            "vocab_size": 49408,
            "hidden_size": 64,
            "intermediate_size": 128,
            "projection_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
        },
    }


@torch.no_grad()
def condition_random_weights(
    module: torch.nn.Module, *, residual_gain: float, generator: torch.Generator
) -> None:
    """Re-draw a random network's weights so that the image signal survives it (in place).

    With PyTorch's default initialisation (variance 1/(3·fan_in)) every convolution shrinks its
    input by ≈ √3, while each residual branch starts with a GroupNorm that rescales whatever it
    gets to unit variance: after a few blocks the random branches, not the image, make up the
    features (a linear probe of the tiny UNet's maps found almost no object information). Here
    every convolution and linear layer gets N(0, 1/fan_in) weights (variance-preserving) and zero
    biases, and the last layer of every residual branch (ResNet ``conv2``, Transformer
    ``proj_out``) is scaled by ``residual_gain``, so the skip paths carry the image and the
    branches (including the text cross-attention) add a small, non-zero perturbation
    (the SkipInit / ReZero idea, with a non-zero gate). Normalisation layers keep (1, 0).

    Args:
        module: a VAE or UNet, modified in place.
        residual_gain: multiplier of each residual branch's last layer, in (0, 1].
        generator: the source of the random weights (seeded by the caller).
    """
    from diffusers.models.resnet import ResnetBlock2D

    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
            _redraw_variance_preserving(layer, generator)
    for name, layer in module.named_modules():
        if isinstance(layer, ResnetBlock2D):
            layer.conv2.weight.mul_(residual_gain)
        elif name.endswith("proj_out") and isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
            layer.weight.mul_(residual_gain)


def _redraw_variance_preserving(
    layer: torch.nn.Conv2d | torch.nn.Linear, generator: torch.Generator
) -> None:
    """N(0, 1/fan_in) weights and zero bias, in place (call under ``torch.no_grad``)."""
    fan_in = layer.weight[0].numel()
    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / fan_in**0.5)
    if layer.bias is not None:
        layer.bias.zero_()


@torch.no_grad()
def condition_random_text_model(
    model: torch.nn.Module, *, residual_gain: float, generator: torch.Generator
) -> None:
    """Re-draw a random CLIP text model's weights so that its words stay distinguishable.

    Default CLIP initialisation gives word and position embeddings the same small spread (0.02)
    and lets every pre-norm branch, fed by a LayerNorm, add unit-scale noise: the tiny text
    model's pooled features of "the red roofs" and "the blue vehicles" had cosine similarity
    0.95-0.99, so the heads had to learn the sentence from a 5 % difference. Here word
    embeddings are N(0, 1), position embeddings N(0, :data:`TINY_POSITION_GAIN`²), linear
    layers N(0, 1/fan_in), and each branch's last layer (attention ``out_proj``, MLP ``fc2``) is
    scaled by ``residual_gain``: the output of a word stays close to that word's own embedding,
    context-mixed a little, as in a trained encoder (pooled cosines 0.6-0.9).
    """
    for name, layer in model.named_modules():
        if isinstance(layer, torch.nn.Linear):
            _redraw_variance_preserving(layer, generator)
            if name.endswith(("out_proj", "fc2")):
                layer.weight.mul_(residual_gain)
        elif isinstance(layer, torch.nn.Embedding):
            gain = TINY_POSITION_GAIN if name.endswith("position_embedding") else 1.0
            layer.weight.copy_(gain * torch.randn(layer.weight.shape, generator=generator))


def build_tiny_components() -> SDComponents:
    """The tiny preset's parts, bit-identical on every call (fixed seed, caller's RNG untouched).

    The VAE and UNet weights are random but conditioned (:func:`condition_random_weights`) so
    that their features describe the image, and the text model's weights
    (:func:`condition_random_text_model`) so that its features tell the words apart; the VAE's
    posterior mean is scaled by :data:`TINY_LATENT_GAIN` so that the default ``latent_scale``
    suits it as it suits SD-1.5.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        components = components_from_configs(tiny_component_configs())
    generator = torch.Generator().manual_seed(TINY_SEED)
    for part in (components.vae, components.unet):
        condition_random_weights(part, residual_gain=TINY_RESIDUAL_GAIN, generator=generator)
    condition_random_text_model(
        components.text_model, residual_gain=TINY_RESIDUAL_GAIN, generator=generator
    )
    with torch.no_grad():
        latent_channels = components.vae.config["latent_channels"]
        # quant_conv's first half of outputs is the posterior mean; the rest the log-variance
        components.vae.quant_conv.weight[:latent_channels].mul_(TINY_LATENT_GAIN)
    return components


def tiny_head_configs() -> tuple[CPAdapterConfig, PCMRDConfig]:
    """Heads sized to the tiny backbone: a 64-wide decoder keeps a 512² tile well under a
    second on a CPU (the paper's 256-wide decoder would be ~70 % of the tiny forward)."""
    return CPAdapterConfig(heads=4, rank=8), PCMRDConfig(dim=64, heads=4)
