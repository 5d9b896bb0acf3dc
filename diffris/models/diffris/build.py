"""DiffRIS presets: ``build_diffris("tiny" | "sd15")``, the meta-device build, and ``rebuild``.

Sizes live in :mod:`diffris.models.diffris.components` (SD-1.5) and
:mod:`diffris.models.diffris.tiny`; this module composes them (SAM's ``build_sam.py``):

- ``sd15``: Stable Diffusion 1.5 (VAE, UNet) and CLIP ViT-L/14 text from a local folder in the
  diffusers layout, found through ``pretrained``, ``$DIFFRIS_SD15`` or the diffris cache; never
  downloaded unless ``allow_download`` is set.
- ``tiny``: the same classes with conditioned random weights from a fixed seed.

A tiny backbone saved with :func:`diffris.models.diffris.backbone.save_sd_components` loads back
through exactly the ``sd15`` path (:func:`diffris.models.diffris.backbone.load_sd_components`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from diffris.errors import CheckpointMismatchError, InputError, WeightsNotFoundError
from diffris.models.diffris.backbone import FrozenBackbone, SDComponents, load_sd_components
from diffris.models.diffris.components import components_from_configs, sd15_component_configs
from diffris.models.diffris.cp_adapter import CPAdapter, CPAdapterConfig
from diffris.models.diffris.model import BackboneIdentity, DiffRIS, DiffRISConfig
from diffris.models.diffris.pcmrd import PCMRD, PCMRDConfig
from diffris.models.diffris.sd_configs import SD_SCALING_FACTOR
from diffris.models.diffris.text_encoder import FrozenTextEncoder
from diffris.models.diffris.tiny import (
    build_tiny_components,
    tiny_component_configs,
    tiny_head_configs,
)
from diffris.models.fingerprint import (
    FINGERPRINT_SCHEME,
    LEGACY_SCHEME,
    cached_module_digest,
    check_fingerprint,
    fingerprint,
    legacy_fingerprint,
)
from diffris.models.names import Pretrained, pretrained_folder
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


def resolve_sd15(pretrained: Pretrained, allow_download: bool) -> str | Path:
    """The folder (or, with ``allow_download``, Hub id) to load Stable Diffusion 1.5 from.

    Args:
        pretrained: a folder, ``{"sd15": folder}``, or None (``$DIFFRIS_SD15``, the cache).
        allow_download: fall back to the Hub id when no local folder is found.

    Raises:
        WeightsNotFoundError: no complete folder found and downloading not allowed.
    """
    folder = pretrained_folder(pretrained, "sd15", sole=True)
    if folder:
        return Path(folder).expanduser()  # checked, with a precise message, by the loader
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


def build_tiny(
    *,
    pretrained: Pretrained = None,
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
    *, pretrained: Pretrained = None, allow_download: bool = False, **kw: Any
) -> DiffRIS:
    """Stable Diffusion 1.5 from a local diffusers-layout folder (see :func:`resolve_sd15`)."""
    source = resolve_sd15(pretrained, allow_download)
    components = load_sd_components(source, download=isinstance(source, str))
    return compose(components, preset="sd15", **kw)


#: Preset name -> builder. Builders take ``pretrained``, ``allow_download``, ``seed`` and the
#: options of :func:`compose`.
PRESETS: dict[str, Callable[..., DiffRIS]] = {"tiny": build_tiny, "sd15": build_sd15}
#: The config class a trained DiffRIS folder's ``config.json`` holds.
CONFIG_CLASS = DiffRISConfig
#: The model class its presets build (class-level facts such as ``image_features_frozen``).
MODEL_CLASS = DiffRIS


def build_diffris(
    preset: str = "tiny",
    *,
    pretrained: Pretrained = None,
    allow_download: bool = False,
    cp_adapter: CPAdapterConfig | None = None,
    pcmrd: PCMRDConfig | None = None,
    seed: int | None = None,
    **options: Any,
) -> DiffRIS:
    """A DiffRIS model with fresh (untrained) CP-adapter and decoder on a preset backbone.

    Args:
        preset: a :data:`PRESETS` name.
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
    if preset not in PRESETS:
        raise InputError(f"unknown model {preset!r}; choose one of: {', '.join(PRESETS)}")
    builder = PRESETS[preset]
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


def rebuild(
    config: DiffRISConfig,
    *,
    pretrained: Pretrained = None,
    check_backbone: bool = True,
    source: Path,
) -> DiffRIS:
    """The model a trained folder's config describes: its preset backbone and fresh heads.

    The backbone must be the one the heads were trained on (its fingerprint; a config of an
    older diffris records a partial, scheme-1 fingerprint, checked as such with a warning).

    Args:
        config: the folder's :class:`DiffRISConfig`.
        pretrained: Stable Diffusion folder for ``sd15`` models (else ``$DIFFRIS_SD15``).
        check_backbone: refuse another backbone (off: warn and load anyway).
        source: the trained folder, for messages.

    Raises:
        CheckpointMismatchError: the backbone differs in shape or weights.
        WeightsNotFoundError: backbone weights are missing.
    """
    expected = config.backbone
    try:
        model = build_diffris(
            expected.preset,
            pretrained=pretrained,
            cp_adapter=config.cp_adapter,
            pcmrd=config.pcmrd,
            latent_scale=config.latent_scale,
            timestep=config.timestep,
            max_tokens=config.max_tokens,
            mask_threshold=config.mask_threshold,
        )
    except InputError as err:
        raise CheckpointMismatchError(f"{source}: {err}") from err
    actual = model.config.backbone
    shape = (expected.text_dim, tuple(expected.feature_channels))
    if shape != (actual.text_dim, tuple(actual.feature_channels)):
        raise CheckpointMismatchError(
            f"{source} was trained on a backbone with text width {expected.text_dim} and feature "
            f"channels {tuple(expected.feature_channels)}; the {actual.preset} backbone has "
            f"{actual.text_dim} and {tuple(actual.feature_channels)}"
        )
    found = actual.fingerprint
    if expected.fingerprint_scheme == LEGACY_SCHEME:
        parts = [model.backbone.vae, model.backbone.unet, model.text_encoder.model]
        found = legacy_fingerprint(parts, extra=[str(len(model.text_encoder.tokenizer))])
    check_fingerprint(
        source,
        preset=expected.preset,
        expected=expected.fingerprint,
        found=found,
        scheme=expected.fingerprint_scheme,
        strict=check_backbone,
        hint="other weights, or another torch/diffusers version for tiny",
    )
    _check_latent_scale(source, model)
    return model


def _check_latent_scale(source: Path, model: DiffRIS) -> None:
    """Warn when the backbone's VAE config asks for another latent scale than the trained one.

    The trained heads only ever saw latents at the recorded ``latent_scale``, so that one is used;
    a folder that says otherwise (and is not SD-1.x's own 0.18215) is worth a word.
    """
    trained = model.config.latent_scale
    folder_scale = model.backbone.vae.config.get("scaling_factor") or SD_SCALING_FACTOR
    if folder_scale != SD_SCALING_FACTOR and not math.isclose(folder_scale, trained):
        logger.warning(
            "%s was trained with latent_scale %s but the backbone's VAE config says "
            "scaling_factor %s; using %s, the scale the trained heads expect",
            source,
            trained,
            folder_scale,
            trained,
        )


def build_for_training(config: Any) -> DiffRIS:
    """The untrained DiffRIS of a training config, heads seeded with ``config.seed``.

    Args:
        config: a :class:`diffris.train.config.TrainConfig` (its ``cp_adapter``, ``pcmrd``,
            ``ablation``, ``latent_scale``, ``timestep`` and ``model_options``; None = the
            preset's default).
    """
    if config.preset == "tiny":
        default_adapter, default_decoder = tiny_head_configs()
    else:
        default_adapter, default_decoder = CPAdapterConfig(), PCMRDConfig()
    adapter, decoder = config.ablation.apply(
        config.cp_adapter or default_adapter, config.pcmrd or default_decoder
    )
    options = {
        name: getattr(config, name)
        for name in ("latent_scale", "timestep")
        if getattr(config, name) is not None
    }
    options.update(config.model_options)
    return build_diffris(
        config.preset,
        pretrained=config.pretrained,
        cp_adapter=adapter,
        pcmrd=decoder,
        seed=config.seed,
        **options,
    )


def check_pretrained(preset: str, pretrained: Pretrained) -> None:
    """Refuse a ``--pretrained`` Stable Diffusion folder that is missing or incomplete.

    Raises:
        WeightsNotFoundError: naming the folder and what is missing.
    """
    given = pretrained_folder(pretrained, "sd15", sole=True)
    if given is None:
        return
    folder = Path(given).expanduser()
    if preset == "tiny":
        logger.warning("--pretrained %s is ignored: the tiny preset has its own weights", folder)
        return
    if not folder.is_dir():
        raise WeightsNotFoundError(
            f"--pretrained {folder} does not exist; give a local Stable Diffusion 1.5 folder in "
            f"the diffusers layout (unet/, vae/, text_encoder/, tokenizer/) or set {SD15_ENV}"
        )
    missing = inspect_sd_folder(folder).missing
    if missing:
        raise WeightsNotFoundError(
            f"--pretrained {folder} is incomplete: missing {', '.join(f'{m}/' for m in missing)} "
            "(expected the diffusers layout unet/, vae/, text_encoder/, tokenizer/)"
        )
