"""Presets and the model registry: ``build_diffris("tiny" | "sd15")`` and ``load_model``.

Sizes live here and only here (SAM's ``build_sam.py``). Two presets build the same classes:

- ``sd15``: Stable Diffusion 1.5 (VAE, UNet) and CLIP ViT-L/14 text from a local folder in the
  diffusers layout, found through ``pretrained``, ``$DIFFRIS_SD15`` or the diffris cache; never
  downloaded unless ``allow_download`` is set.
- ``tiny``: the same classes (``AutoencoderKL``, ``UNet2DConditionModel``, ``CLIPTextModel``, the
  real CLIP tokenizer) with random weights from a fixed seed, small enough for a 512² tile to run
  in well under a second on a CPU. Every test uses it.

A tiny backbone saved with :func:`diffris.models.backbone.save_sd_components` loads back through
exactly the ``sd15`` path (:func:`diffris.models.backbone.load_sd_components`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from diffris.devices import resolve_device
from diffris.errors import InputError, WeightsNotFoundError
from diffris.models.backbone import FrozenBackbone, SDComponents, load_sd_components
from diffris.models.cp_adapter import CPAdapter, CPAdapterConfig
from diffris.models.diffris import BackboneIdentity, DiffRIS, DiffRISConfig
from diffris.models.fingerprint import FINGERPRINT_SCHEME, cached_module_digest, fingerprint
from diffris.models.names import resolve_model
from diffris.models.pcmrd import PCMRD, PCMRDConfig
from diffris.models.sd_configs import SD_SCALING_FACTOR
from diffris.models.text_encoder import FrozenTextEncoder, load_bundled_tokenizer
from diffris.paths import (
    SD15_DOWNLOAD_COMMAND,
    SD15_ENV,
    SD15_REPO_ID,
    find_sd15,
    inspect_sd_folder,
    sd15_candidates,
)

logger = logging.getLogger(__name__)

#: The Hub id fetched only when downloading is explicitly allowed.
SD15_HUB_ID = SD15_REPO_ID
#: Seed of the tiny preset's random weights; part of its identity.
TINY_SEED = 20240501
#: Seed of the untrained heads of a preset loaded by name through :func:`load_model`.
PRESET_HEAD_SEED = 0
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


def sd15_component_configs() -> dict[str, dict[str, Any]]:
    """Constructor arguments of Stable Diffusion 1.5's VAE and UNet and CLIP ViT-L/14 text.

    For building on the ``meta`` device (parameter counts, planning) without weights; a real
    ``sd15`` model takes its architecture from the folder's own configs.
    """
    return {
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "block_out_channels": [128, 256, 512, 512],
            "layers_per_block": 2,
            "latent_channels": 4,
            "norm_num_groups": 32,
            "sample_size": 512,
        },
        "unet": {
            "sample_size": 64,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": [
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ],
            "up_block_types": [
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ],
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        },
        "text": {
            "vocab_size": 49408,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "projection_dim": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
        },
    }


def components_from_configs(configs: dict[str, dict[str, Any]]) -> SDComponents:
    """Build VAE, UNet and text model from :func:`tiny_component_configs`-style arguments.

    Weights are the classes' random initialisation from the current RNG state; build inside
    ``with torch.device("meta"):`` to get shapes only. The tokenizer is the bundled CLIP one.
    """
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return SDComponents(
        vae=AutoencoderKL(**configs["vae"]),
        unet=UNet2DConditionModel(**configs["unet"]),
        text_model=CLIPTextModel(CLIPTextConfig(**configs["text"])),
        tokenizer=load_bundled_tokenizer(),
    )


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


def resolve_sd15(pretrained: str | os.PathLike[str] | None, allow_download: bool) -> str | Path:
    """The folder (or, with ``allow_download``, Hub id) to load Stable Diffusion 1.5 from.

    Raises:
        WeightsNotFoundError: no complete folder found and downloading not allowed.
    """
    if pretrained:
        return Path(pretrained).expanduser()  # checked, with a precise message, by the loader
    found = find_sd15()
    if found is not None:
        return found
    if allow_download:
        return SD15_HUB_ID
    searched = ", ".join(
        f"{path} ({inspect_sd_folder(path).reason()})" for path in sd15_candidates()
    )
    raise WeightsNotFoundError(
        f"Stable Diffusion 1.5 weights not found (searched: {searched}); run "
        f"'{SD15_DOWNLOAD_COMMAND}' to fetch them into the last of these folders, or pass "
        f"--pretrained DIR or set {SD15_ENV} to a diffusers-layout folder (unet/, vae/, "
        "text_encoder/, tokenizer/) with safetensors weights"
    )


def compose(
    components: SDComponents,
    *,
    preset: str,
    cp_adapter: CPAdapterConfig | None = None,
    pcmrd: PCMRDConfig | None = None,
    seed: int | None = None,
    **options: Any,
) -> DiffRIS:
    """Wrap loaded parts into a DiffRIS model with fresh trainable heads.

    Args:
        components: full VAE, UNet, text model and tokenizer; the backbone takes ownership and
            removes the parts DiffRIS does not use.
        preset: name recorded in the backbone identity.
        cp_adapter: CP-adapter options; None for the defaults.
        pcmrd: decoder options; None for the defaults.
        seed: initialise the heads from this seed (leaving the global RNG untouched); None
            draws from the global RNG, as a training script that seeds torch expects.
        **options: further :class:`DiffRISConfig` fields (``latent_scale``, ``timestep``,
            ``max_tokens``, ``mask_threshold``).

    Raises:
        InputError: an unknown option or a value out of range.
    """
    unknown = sorted(set(options) - {"latent_scale", "timestep", "max_tokens", "mask_threshold"})
    if unknown:
        raise InputError(
            f"unknown model option(s): {', '.join(unknown)}; valid: latent_scale, timestep, "
            "max_tokens, mask_threshold, cp_adapter, pcmrd"
        )
    scale = float(components.vae.config.get("scaling_factor") or SD_SCALING_FACTOR)
    if "latent_scale" not in options:
        options["latent_scale"] = scale  # the VAE's own; an explicit latent_scale wins
    elif options["latent_scale"] != scale:
        logger.debug(
            "latent_scale %s given; the VAE's config says %s", options["latent_scale"], scale
        )
    max_tokens = options.get("max_tokens", DiffRISConfig.max_tokens)
    positions = int(components.text_model.config.max_position_embeddings)
    if max_tokens > positions:
        raise InputError(
            f"max_tokens {max_tokens} exceeds the text encoder's {positions} positions; use "
            f"max_tokens <= {positions}"
        )
    backbone = FrozenBackbone(components.vae, components.unet)
    text_encoder = FrozenTextEncoder(
        components.text_model, components.tokenizer, max_tokens=max_tokens
    )
    identity = BackboneIdentity(
        preset=preset,
        fingerprint=backbone_fingerprint(backbone, text_encoder, components.folder),
        text_dim=text_encoder.dim,
        feature_channels=backbone.feature_channels,
        fingerprint_scheme=FINGERPRINT_SCHEME,
    )
    config = DiffRISConfig(
        backbone=identity,
        cp_adapter=cp_adapter or CPAdapterConfig(),
        pcmrd=pcmrd or PCMRDConfig(),
        **options,
    )
    device = backbone.unet.conv_in.weight.device
    with torch.random.fork_rng(devices=[], enabled=seed is not None), torch.device(device):
        if seed is not None:
            torch.manual_seed(seed)
        adapter = CPAdapter(config.cp_adapter, dim=identity.text_dim)
        decoder = PCMRD(
            config.pcmrd, feature_channels=backbone.feature_channels, text_dim=identity.text_dim
        )
    return DiffRIS(
        backbone=backbone,
        text_encoder=text_encoder,
        cp_adapter=adapter,
        decoder=decoder,
        config=config,
    )


def backbone_fingerprint(
    backbone: FrozenBackbone, text_encoder: FrozenTextEncoder, folder: Path | None
) -> str:
    """The scheme-2 fingerprint of a built backbone ("" on the ``meta`` device).

    Args:
        backbone: VAE encoder + UNet, as the model holds them (unused heads removed).
        text_encoder: the CLIP text model and tokenizer.
        folder: the diffusers-layout folder they were loaded from, whose files key the digest
            cache; None (in-memory weights) hashes every tensor each time.
    """
    if backbone.unet.conv_in.weight.is_meta:
        return ""
    parts = (("vae", backbone.vae), ("unet", backbone.unet), ("text_encoder", text_encoder.model))
    digests = [
        cached_module_digest(module, None if folder is None else folder / sub)
        for sub, module in parts
    ]
    return fingerprint(digests, extra=[str(len(text_encoder.tokenizer))])


def tiny_head_configs() -> tuple[CPAdapterConfig, PCMRDConfig]:
    """Heads sized to the tiny backbone: a 64-wide decoder keeps a 512² tile well under a
    second on a CPU (the paper's 256-wide decoder would be ~70 % of the tiny forward)."""
    return CPAdapterConfig(heads=4, rank=8), PCMRDConfig(dim=64, heads=4)


def build_tiny(
    *,
    pretrained: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    cp_adapter: CPAdapterConfig | None = None,
    pcmrd: PCMRDConfig | None = None,
    **kw: Any,
) -> DiffRIS:
    """The tiny preset (random frozen weights; ``pretrained``/``allow_download`` are ignored)."""
    default_adapter, default_decoder = tiny_head_configs()
    return compose(
        build_tiny_components(),
        preset="tiny",
        cp_adapter=cp_adapter or default_adapter,
        pcmrd=pcmrd or default_decoder,
        **kw,
    )


def build_sd15(
    *, pretrained: str | os.PathLike[str] | None = None, allow_download: bool = False, **kw: Any
) -> DiffRIS:
    """Stable Diffusion 1.5 from a local diffusers-layout folder (see :func:`resolve_sd15`)."""
    source = resolve_sd15(pretrained, allow_download)
    components = load_sd_components(source, download=isinstance(source, str))
    return compose(components, preset="sd15", **kw)


#: Preset name -> builder. Builders take ``pretrained``, ``allow_download`` and the options of
#: :func:`compose`.
MODEL_REGISTRY: dict[str, Callable[..., DiffRIS]] = {"tiny": build_tiny, "sd15": build_sd15}


def build_diffris(
    preset: str = "tiny",
    *,
    pretrained: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    cp_adapter: CPAdapterConfig | None = None,
    pcmrd: PCMRDConfig | None = None,
    seed: int | None = None,
    **options: Any,
) -> DiffRIS:
    """A DiffRIS model with fresh (untrained) CP-adapter and decoder on a preset backbone.

    Args:
        preset: a :data:`MODEL_REGISTRY` name.
        pretrained: Stable Diffusion folder for ``sd15`` (else ``$DIFFRIS_SD15`` / the cache).
        allow_download: let ``sd15`` fetch the weights from the Hugging Face Hub when no local
            folder is found; off by default.
        cp_adapter: CP-adapter options; None for the defaults.
        pcmrd: decoder options; None for the defaults.
        seed: initialise the heads from this seed instead of the global RNG.
        **options: ``latent_scale``, ``timestep``, ``max_tokens``, ``mask_threshold``.

    Raises:
        InputError: unknown preset or option.
        WeightsNotFoundError: ``sd15`` weights not found or incomplete.
    """
    if preset not in MODEL_REGISTRY:
        raise InputError(f"unknown model {preset!r}; choose one of: {', '.join(MODEL_REGISTRY)}")
    builder = MODEL_REGISTRY[preset]
    return builder(
        pretrained=pretrained,
        allow_download=allow_download,
        cp_adapter=cp_adapter,
        pcmrd=pcmrd,
        seed=seed,
        **options,
    )


def build_on_meta(preset: str = "sd15", **kw: Any) -> DiffRIS:
    """A model with every tensor on the ``meta`` device: shapes and counts, no weights, no files.

    Args:
        preset: ``sd15`` or ``tiny`` (their component configs).
        **kw: as :func:`compose` (``cp_adapter``, ``pcmrd``, options).
    """
    configs = {"sd15": sd15_component_configs, "tiny": tiny_component_configs}
    if preset not in configs:
        raise InputError(f"unknown model {preset!r}; choose one of: {', '.join(configs)}")
    with torch.device("meta"):
        components = components_from_configs(configs[preset]())
    return compose(components, preset=preset, **kw)


def load_model(
    name_or_folder: str | os.PathLike[str],
    *,
    pretrained: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
) -> DiffRIS:
    """A preset (untrained heads) or a trained-model folder, in eval mode on ``device``.

    A preset's untrained heads are initialised from :data:`PRESET_HEAD_SEED`, so that loading
    ``tiny`` twice gives the same model (and the same outputs) in every process.

    Args:
        name_or_folder: ``tiny``, ``sd15``, or a folder written by
            :func:`diffris.models.checkpoint.save_trained`.
        pretrained: Stable Diffusion folder for ``sd15`` backbones.
        device: ``cpu``, ``cuda:N``, ``auto`` or None (the CPU).

    Raises:
        InputError, InputNotFoundError: see :func:`resolve_model`.
        WeightsNotFoundError: the folder is not a trained model, or backbone weights are missing.
        CheckpointMismatchError: the trained weights do not fit the model.
    """
    from diffris.models.checkpoint import load_trained

    target = torch.device("cpu") if device is None else resolve_device(str(device))
    source = resolve_model(name_or_folder)
    if isinstance(source, str):
        model = build_diffris(source, pretrained=pretrained, seed=PRESET_HEAD_SEED)
    else:
        model = load_trained(source, pretrained=pretrained)
    return model.to(target).eval()
