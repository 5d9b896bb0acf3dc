"""Checks of a diffusers-layout folder's configs, before a single weight is read.

Stable Diffusion parts are built from their ``config.json`` files, and parts that do not fit
together (a VAE with 16 latent channels and a UNet that takes 4, a text encoder 1024 wide for a
UNet cross-attending to 768) would otherwise load fine and fail with a ``RuntimeError`` at the
first tile. A config with absurd sizes would make diffusers allocate terabytes. Here each config
is read as JSON, its sizes are bounded, and the parts are checked against one another; every
message names the file, the value and the fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffris.errors import CheckpointMismatchError, WeightsNotFoundError

#: The Stable Diffusion 1.x VAE's latent multiplier, used when ``vae/config.json`` has none.
SD_SCALING_FACTOR = 0.18215
#: A config file larger than this is not a config (it is read no further).
MAX_CONFIG_BYTES = 1 << 20
#: Bound of every channel count or width (SD-1.5's largest is 1280; SDXL's 2048).
MAX_WIDTH = 16384
#: Bounds of the CLIP vocabulary (49,408) and positions (77).
MAX_VOCAB = 1_000_000
MAX_POSITIONS = 4096


@dataclass(frozen=True)
class SDConfigs:
    """The figures of a folder's configs that DiffRIS relies on, checked.

    Attributes:
        scaling_factor: the VAE's latent multiplier (``vae/config.json`` ``scaling_factor``).
        text_vocab: rows of the text model's token embedding.
        text_positions: positions the text model embeds (CLIP: 77).
    """

    scaling_factor: float
    text_vocab: int
    text_positions: int


def read_config(folder: Path, sub: str) -> dict[str, Any]:
    """``<folder>/<sub>/config.json`` as a dict.

    Raises:
        WeightsNotFoundError: it is missing, too large, not JSON, or not a JSON object.
    """
    path = folder / sub / "config.json"
    fix = "restore it from a complete copy of the weights"
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise WeightsNotFoundError(f"cannot read {path}: {err.strerror or err}; {fix}") from err
    if len(data) > MAX_CONFIG_BYTES:
        raise WeightsNotFoundError(f"{path} is over {MAX_CONFIG_BYTES} bytes, not a config; {fix}")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as err:
        reason = str(err).splitlines()[0][:120] if isinstance(err, ValueError) else "too deep"
        raise WeightsNotFoundError(f"{path} is not valid JSON ({reason}); {fix}") from err
    if not isinstance(raw, dict):
        raise WeightsNotFoundError(
            f"{path} holds a JSON {type(raw).__name__}, not an object; {fix}"
        )
    return raw


def check_sd_configs(folder: Path) -> SDConfigs:
    """Read and check the UNet, VAE and text encoder configs of ``folder`` against each other.

    Raises:
        WeightsNotFoundError: a config is missing, malformed, or has an out-of-range size.
        CheckpointMismatchError: the parts do not fit together (latent channels, text width).
    """
    unet, vae, text = (read_config(folder, sub) for sub in ("unet", "vae", "text_encoder"))
    paths = {sub: folder / sub / "config.json" for sub in ("unet", "vae", "text_encoder")}
    latent = _size(vae, "latent_channels", paths["vae"], default=4)
    unet_in = _size(unet, "in_channels", paths["unet"], default=4)
    image_in = _size(vae, "in_channels", paths["vae"], default=3)
    hidden = _size(text, "hidden_size", paths["text_encoder"], default=512)
    cross = _cross_attention_dim(unet, paths["unet"])
    vocab = _size(text, "vocab_size", paths["text_encoder"], default=49408, bound=MAX_VOCAB)
    positions = _size(
        text, "max_position_embeddings", paths["text_encoder"], default=77, bound=MAX_POSITIONS
    )
    for sub, config in (("unet", unet), ("vae", vae)):
        _sizes(config, "block_out_channels", paths[sub])
    if latent != unet_in:
        raise CheckpointMismatchError(
            f"the VAE and the UNet of {folder} do not fit: vae/config.json has latent_channels "
            f"{latent} but unet/config.json has in_channels {unet_in}; use the VAE the UNet was "
            "trained with"
        )
    if image_in != 3:
        raise CheckpointMismatchError(
            f"{paths['vae']} has in_channels {image_in}; DiffRIS feeds the VAE RGB images (3)"
        )
    if hidden != cross:
        raise CheckpointMismatchError(
            f"the text encoder and the UNet of {folder} do not fit: text_encoder/config.json has "
            f"hidden_size {hidden} but unet/config.json has cross_attention_dim {cross}; use the "
            "text encoder the UNet was trained with"
        )
    return SDConfigs(
        scaling_factor=_scaling_factor(vae, paths["vae"]),
        text_vocab=vocab,
        text_positions=positions,
    )


def _size(
    config: dict[str, Any], key: str, path: Path, *, default: int, bound: int = MAX_WIDTH
) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= bound:
        raise WeightsNotFoundError(
            f"{path} has {key} {_show(value)}; expected a whole number in 1..{bound}: restore the "
            "config from a complete copy of the weights"
        )
    return value


def _sizes(config: dict[str, Any], key: str, path: Path) -> list[int]:
    values = config.get(key, [64])
    if not isinstance(values, list) or not values or len(values) > 16:
        raise WeightsNotFoundError(
            f"{path} has {key} {_show(values)}; expected a list of 1 to 16 channel counts"
        )
    return [_size({key: value}, key, path, default=0) for value in values]


def _cross_attention_dim(unet: dict[str, Any], path: Path) -> int:
    """The UNet's cross-attention width; a per-block list must hold one width for DiffRIS."""
    value = unet.get("cross_attention_dim", 1280)
    if isinstance(value, list):
        widths = {
            _size({"cross_attention_dim": v}, "cross_attention_dim", path, default=0) for v in value
        }
        if len(widths) != 1:
            raise CheckpointMismatchError(
                f"{path} has cross_attention_dim {_show(value)}: one width per block; DiffRIS "
                "feeds every block the same text features, so they must all be equal"
            )
        return widths.pop()
    return _size(unet, "cross_attention_dim", path, default=1280)


def _scaling_factor(vae: dict[str, Any], path: Path) -> float:
    value = vae.get("scaling_factor", SD_SCALING_FACTOR)
    if value is None:
        return SD_SCALING_FACTOR
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        value = -1.0
    if not 0 < value <= 1000:
        raise WeightsNotFoundError(
            f"{path} has scaling_factor {_show(vae.get('scaling_factor'))}; expected a positive "
            f"number (Stable Diffusion 1.x: {SD_SCALING_FACTOR})"
        )
    return float(value)


def _show(value: Any) -> str:
    """A config value for a message, cut so that a huge value keeps the message one short line."""
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    except (ValueError, RecursionError):
        text = f"(a deeply nested {type(value).__name__})"
    return text if len(text) <= 40 else text[:37] + "..."
