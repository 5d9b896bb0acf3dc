"""RSRefSeg presets: ``build_rsrefseg("rsrefseg-tiny" | "rsrefseg-b" | "rsrefseg-l")``.

- ``rsrefseg-b`` / ``rsrefseg-l``: SigLIP so400m-patch14-384 and SAM ViT-B / ViT-L from local
  Hugging Face folders (:mod:`diffris.models.rsrefseg.folders`: ``--pretrained siglip=DIR
  --pretrained sam=DIR`` or environment variables); never downloaded.
- ``rsrefseg-tiny``: the same classes (``SiglipModel``, ``SamModel``) from small configs with
  random frozen weights from a fixed seed, conditioned so that the features keep the image and
  the words, and the bundled small SigLIP-style tokenizer. Every test uses it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from diffris.errors import CheckpointMismatchError, InputError
from diffris.models.fingerprint import (
    FINGERPRINT_SCHEME,
    cached_module_digest,
    check_fingerprint,
    fingerprint,
)
from diffris.models.rsrefseg.components import RSRefSegComponents
from diffris.models.rsrefseg.config import RSRefSegConfig, RSRefSegIdentity
from diffris.models.rsrefseg.configs import (
    EOS_ID,
    sam_vit_b_config,
    sam_vit_l_config,
    so400m_siglip_config,
    tiny_component_configs,
)
from diffris.models.rsrefseg.model import RSRefSeg
from diffris.models.rsrefseg.recipe import MODEL_OPTIONS

logger = logging.getLogger(__name__)

#: Seed of the tiny preset's random frozen weights; part of its identity.
TINY_SEED = 20250116
#: Gain of the last layer of every residual branch of the tiny towers (attention output,
#: MLP output): the skip paths carry the input, the branches perturb it a little.
TINY_RESIDUAL_GAIN = 0.1
#: Spread of the tiny towers' position embeddings relative to their (unit) word embeddings.
TINY_POSITION_GAIN = 0.1
#: The tiny SigLIP's logit scale exp(·) and bias: random features have cosines near 0, so the
#: real model's (≈ 117, -13) would saturate every activation at 0.
TINY_LOGIT_SCALE = 10.0
TINY_LOGIT_BIAS = 0.0
#: Options :func:`compose` passes on to :class:`RSRefSegConfig`.
OPTIONS = frozenset(MODEL_OPTIONS)

Pretrained = str | os.PathLike[str] | Mapping[str, Any] | None


def load_bundled_siglip_tokenizer() -> Any:
    """The small SigLIP-style tokenizer shipped in ``diffris/assets/siglip_tokenizer``."""
    from transformers import AutoTokenizer

    folder = resources.files("diffris") / "assets" / "siglip_tokenizer"
    return AutoTokenizer.from_pretrained(str(folder))


def components_from_configs(siglip: dict[str, Any], sam: dict[str, Any]) -> RSRefSegComponents:
    """SigLIP and SAM from ``SiglipConfig`` / ``SamConfig`` arguments (random init from the
    current RNG; inside ``with torch.device("meta"):`` shapes only), with the bundled tokenizer."""
    from transformers import SamConfig, SamModel, SiglipConfig, SiglipModel

    return RSRefSegComponents(
        siglip=SiglipModel(SiglipConfig(**siglip)),
        tokenizer=load_bundled_siglip_tokenizer(),
        sam=SamModel(SamConfig(**sam)),
    )


@torch.no_grad()
def condition_random_tower(
    tower: torch.nn.Module, *, residual_branch_ends: tuple[str, ...], generator: torch.Generator
) -> None:
    """Re-draw a random transformer's weights so that its input survives it (in place).

    As :func:`diffris.models.build.condition_random_weights` does for the tiny DiffRIS: every
    linear and convolution layer gets N(0, 1/fan_in) weights (variance-preserving) and zero
    biases, the last layer of every residual branch is scaled by :data:`TINY_RESIDUAL_GAIN`,
    word embeddings are N(0, 1) and position embeddings N(0, :data:`TINY_POSITION_GAIN`²), so
    that a token's output stays close to its own input, context-mixed a little.

    Args:
        tower: a SigLIP tower or SAM's vision encoder.
        residual_branch_ends: name suffixes of the residual branches' last layers.
        generator: the source of the random weights (seeded by the caller).
    """
    for name, layer in tower.named_modules():
        if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
            fan_in = layer.weight[0].numel()
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / fan_in**0.5)
            if layer.bias is not None:
                layer.bias.zero_()
            if name.endswith(residual_branch_ends) and ".layers." in f".{name}":
                layer.weight.mul_(TINY_RESIDUAL_GAIN)
        elif isinstance(layer, torch.nn.Embedding):
            gain = TINY_POSITION_GAIN if name.endswith("position_embedding") else 1.0
            layer.weight.copy_(gain * torch.randn(layer.weight.shape, generator=generator))


def build_tiny_components() -> RSRefSegComponents:
    """``rsrefseg-tiny``'s frozen parts, bit-identical on every call (caller's RNG untouched)."""
    configs = tiny_component_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        components = components_from_configs(configs["siglip"], configs["sam"])
    generator = torch.Generator().manual_seed(TINY_SEED)
    siglip, sam = components.siglip, components.sam
    for tower in (siglip.vision_model, siglip.text_model):
        condition_random_tower(tower, residual_branch_ends=("out_proj", "fc2"), generator=generator)
    condition_random_tower(
        sam.vision_encoder, residual_branch_ends=("attn.proj", "mlp.lin2"), generator=generator
    )
    # the trainable heads start from these too: SAM's default init (std 0.02) would give logits
    # of order 1e-6, all probabilities 0.5
    for head in (sam.prompt_encoder, sam.mask_decoder):
        condition_random_tower(head, residual_branch_ends=("out_proj",), generator=generator)
    with torch.no_grad():
        # SigLIP pools the last position, a padding ``</s>`` for every prompt shorter than 64
        # tokens; a trained SigLIP has learnt to gather the words there, random attention
        # spreads it over ~60 identical pads (pooled cosine of "the red roofs" and "the blue
        # vehicles": 1.00). A zero ``</s>`` embedding and no text position embeddings make every
        # pad a zero vector (LayerNorm keeps it zero), so the pooled output reads the words only
        # (pooled cosines 0.1-0.9).
        siglip.text_model.embeddings.position_embedding.weight.zero_()
        siglip.text_model.embeddings.token_embedding.weight[EOS_ID].zero_()
        siglip.logit_scale.fill_(float(torch.tensor(TINY_LOGIT_SCALE).log()))
        siglip.logit_bias.fill_(TINY_LOGIT_BIAS)
    return components


def backbone_identity(components: RSRefSegComponents, preset: str) -> RSRefSegIdentity:
    """The identity (fingerprints, widths) of unmodified components ("" on ``meta``)."""
    siglip, sam = components.siglip, components.sam
    clip_dim = int(siglip.config.vision_config.hidden_size)
    sam_dim = int(sam.config.vision_config.output_channels)
    if siglip.logit_scale.is_meta:
        siglip_print = sam_print = combined = ""
    else:
        siglip_print = cached_module_digest(siglip, components.siglip_folder)
        sam_print = cached_module_digest(sam, components.sam_folder)
        combined = fingerprint([siglip_print, sam_print], extra=[str(len(components.tokenizer))])
    return RSRefSegIdentity(
        preset=preset,
        fingerprint=combined,
        siglip_fingerprint=siglip_print,
        sam_fingerprint=sam_print,
        fingerprint_scheme=FINGERPRINT_SCHEME,
        clip_dim=clip_dim,
        sam_dim=sam_dim,
    )


def compose(
    components: RSRefSegComponents, *, preset: str, seed: int | None = None, **options: Any
) -> RSRefSeg:
    """Wrap frozen parts into an RSRefSeg model with fresh LoRA, prompter and SAM heads.

    The fingerprints are taken before LoRA is added. SAM's prompt encoder and mask decoder keep
    the weights they came with (SAM's own, for b/l) and are trained from there; the prompter and
    LoRA are initialised from ``seed`` (leaving the global RNG untouched), or from the global RNG
    when ``seed`` is None.

    Args:
        components: SigLIP, its tokenizer and SAM; the model takes ownership.
        preset: name recorded in the identity.
        seed: initialise the fresh parts from this seed.
        **options: :class:`RSRefSegConfig` fields (see :data:`OPTIONS`).

    Raises:
        InputError: an unknown option, a value out of range, or parts that do not fit.
    """
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise InputError(
            f"unknown RSRefSeg option(s): {', '.join(unknown)}; valid: {', '.join(sorted(OPTIONS))}"
        )
    siglip_config = components.siglip.config
    positions = int(siglip_config.text_config.max_position_embeddings)
    max_tokens = int(options.get("max_tokens", min(positions, RSRefSegConfig.max_tokens)))
    if max_tokens > positions:
        raise InputError(
            f"max_tokens {max_tokens} exceeds SigLIP text's {positions} positions; use "
            f"max_tokens <= {positions}"
        )
    config = RSRefSegConfig(
        backbone=backbone_identity(components, preset),
        siglip_size=int(siglip_config.vision_config.image_size),
        sam_size=int(components.sam.config.vision_config.image_size),
        **{**options, "max_tokens": max_tokens},
    )
    device = components.sam.mask_decoder.iou_token.weight.device
    with torch.random.fork_rng(devices=[], enabled=seed is not None), torch.device(device):
        if seed is not None:
            torch.manual_seed(seed)
        return RSRefSeg(components, config)


def build_tiny(*, pretrained: Pretrained = None, seed: int | None = None, **kw: Any) -> RSRefSeg:
    """``rsrefseg-tiny`` (random frozen weights; ``pretrained`` is ignored)."""
    return compose(build_tiny_components(), preset="rsrefseg-tiny", seed=seed, **kw)


def _build_real(preset: str, pretrained: Pretrained, seed: int | None, **kw: Any) -> RSRefSeg:
    from diffris.models.rsrefseg.folders import load_components, resolve_folders

    siglip_folder, sam_folder = resolve_folders(pretrained, preset)
    return compose(load_components(siglip_folder, sam_folder), preset=preset, seed=seed, **kw)


def build_b(*, pretrained: Pretrained = None, seed: int | None = None, **kw: Any) -> RSRefSeg:
    """``rsrefseg-b``: SigLIP so400m + SAM ViT-B from local folders."""
    return _build_real("rsrefseg-b", pretrained, seed, **kw)


def build_l(*, pretrained: Pretrained = None, seed: int | None = None, **kw: Any) -> RSRefSeg:
    """``rsrefseg-l``: SigLIP so400m + SAM ViT-L from local folders."""
    return _build_real("rsrefseg-l", pretrained, seed, **kw)


#: Preset name -> builder (keyword arguments ``pretrained``, ``seed`` and :data:`OPTIONS`).
RSREFSEG_PRESETS: dict[str, Callable[..., RSRefSeg]] = {
    "rsrefseg-tiny": build_tiny,
    "rsrefseg-b": build_b,
    "rsrefseg-l": build_l,
}

#: Preset name -> (SigLIP config, SAM config) builders, for :func:`build_on_meta`.
META_CONFIGS: dict[str, Callable[[], tuple[dict[str, Any], dict[str, Any]]]] = {
    "rsrefseg-tiny": lambda: tuple(tiny_component_configs().values()),  # type: ignore[return-value]
    "rsrefseg-b": lambda: (so400m_siglip_config(), sam_vit_b_config()),
    "rsrefseg-l": lambda: (so400m_siglip_config(), sam_vit_l_config()),
}


def _check_preset(preset: str) -> None:
    if preset not in RSREFSEG_PRESETS:
        raise InputError(
            f"unknown RSRefSeg model {preset!r}; choose one of: {', '.join(RSREFSEG_PRESETS)}"
        )


def build_rsrefseg(
    preset: str = "rsrefseg-tiny",
    *,
    pretrained: Pretrained = None,
    seed: int | None = None,
    **options: Any,
) -> RSRefSeg:
    """An RSRefSeg model with fresh (untrained) LoRA and prompter on a preset's frozen parts.

    Args:
        preset: a :data:`RSREFSEG_PRESETS` name.
        pretrained: for b/l, the folders: None (environment), a mapping {"siglip": dir,
            "sam": dir}; see :func:`diffris.models.rsrefseg.folders.resolve_folders`.
        seed: initialise the fresh parts from this seed instead of the global RNG.
        **options: :class:`RSRefSegConfig` fields (:data:`OPTIONS`).

    Raises:
        InputError: unknown preset or option.
        WeightsNotFoundError: b/l folders not found or incomplete.
    """
    _check_preset(preset)
    return RSREFSEG_PRESETS[preset](pretrained=pretrained, seed=seed, **options)


def build_on_meta(preset: str = "rsrefseg-b", **options: Any) -> RSRefSeg:
    """A model with every tensor on the ``meta`` device: shapes and counts, no weights, no files."""
    _check_preset(preset)
    siglip, sam = META_CONFIGS[preset]()
    with torch.device("meta"):
        components = components_from_configs(siglip, sam)
    return compose(components, preset=preset, **options)


def rebuild(
    config: RSRefSegConfig,
    *,
    pretrained: Pretrained = None,
    check_backbone: bool = True,
    source: Path | None = None,
) -> RSRefSeg:
    """The model a trained folder's ``config`` describes: its preset's frozen parts with fresh
    LoRA and heads built with the config's options (the checkpoint loader fills them in).

    The frozen SigLIP and SAM must be the ones the model was trained on: each fingerprint is
    checked, and a mismatch names the part that differs.

    Raises:
        CheckpointMismatchError: an unknown preset or option, or (``check_backbone``) other
            SigLIP or SAM weights.
        WeightsNotFoundError: b/l folders not found or incomplete.
    """
    where = source if source is not None else Path("the trained model")
    fields = config.to_dict()
    options = {name: fields[name] for name in OPTIONS}
    try:
        _check_preset(config.backbone.preset)
        model = build_rsrefseg(config.backbone.preset, pretrained=pretrained, seed=0, **options)
    except InputError as err:
        raise CheckpointMismatchError(f"{where}: {err}") from err
    expected, actual = config.backbone, model.config.backbone
    for part, title in (("siglip", "SigLIP"), ("sam", "SAM")):
        check_fingerprint(
            where,
            preset=f"{expected.preset} {title}",
            expected=getattr(expected, f"{part}_fingerprint"),
            found=getattr(actual, f"{part}_fingerprint"),
            scheme=expected.fingerprint_scheme,
            strict=check_backbone,
            hint=f"another {title} folder, or another torch/transformers version for tiny",
        )
    return model


def build_for_training(config: Any) -> RSRefSeg:
    """The untrained RSRefSeg of a training config, fresh parts seeded with ``config.seed``.

    Args:
        config: a :class:`diffris.train.config.TrainConfig` (its ``preset``, ``pretrained``,
            ``seed`` and ``model_options``).
    """
    return build_rsrefseg(
        config.preset, pretrained=config.pretrained, seed=config.seed, **config.model_options
    )


def check_pretrained(preset: str, pretrained: Pretrained) -> None:
    """Refuse SigLIP/SAM folders the preset cannot load, before a run starts (tiny: ignored).

    Raises:
        WeightsNotFoundError, InputError: see :func:`~diffris.models.rsrefseg.folders.
            resolve_folders`.
    """
    if preset == "rsrefseg-tiny":
        if pretrained:
            logger.warning("--pretrained is ignored: rsrefseg-tiny has its own weights")
        return
    from diffris.models.rsrefseg.folders import resolve_folders

    resolve_folders(pretrained, preset)


#: What the registry looks up (:mod:`diffris.models.registry`).
PRESETS = RSREFSEG_PRESETS
CONFIG_CLASS = RSRefSegConfig
MODEL_CLASS = RSRefSeg
