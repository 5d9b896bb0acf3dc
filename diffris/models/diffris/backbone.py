"""The frozen visual backbone: Stable Diffusion's VAE encoder and UNet as a feature extractor.

An image in [-1, 1] goes through the VAE encoder (posterior mean, no sampling) to a latent, which
the UNet denoises **once**, with no noise added, at a fixed timestep, conditioned on the refined
text features F_r. The outputs of its four decoder stages (``up_blocks[0..3]``, coarse to fine,
each at its own resolution, i.e. *before* the stage's upsampler) are DiffRIS' visual features:
for Stable Diffusion 1.5 at 512², 1280×8×8, 1280×16×16, 640×32×32 and 320×64×64.

Parts DiffRIS never uses are removed when the backbone is built: the VAE decoder (≈ 49 M
parameters) and the UNet's output head (``conv_norm_out``, ``conv_out``), so that neither memory
nor time goes to them. Everything here is frozen and always in eval mode; gradients still flow
*through* the UNet into F_r, which is how the CP-adapter learns.

This module also reads and writes Stable Diffusion folders in the diffusers layout (``unet/``,
``vae/``, ``text_encoder/``, ``tokenizer/``); the ``sd15`` preset and the tiny preset's saved
copies go through the very same :func:`load_sd_components`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import torch
from torch import Tensor, nn

from diffris.errors import CheckpointMismatchError, InputError, WeightsNotFoundError
from diffris.models.diffris.sd_configs import check_sd_configs
from diffris.models.load_report import check_loading_info, load_errors, quiet_hub_libraries
from diffris.models.torch_memory import into_torch_memory
from diffris.paths import (
    SD15_ENV,
    SD_SUBFOLDERS,
    SD_WEIGHT_STEMS,
    inspect_sd_folder,
    safetensors_variant,
)

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

logger = logging.getLogger(__name__)

#: The UNet's decoder stages DiffRIS reads (``up_blocks[0..3]``).
NUM_STAGES = 4


class FrozenBackbone(nn.Module):
    """VAE encoder + UNet of Stable Diffusion, frozen, returning the four decoder-stage maps.

    Args:
        vae: an ``AutoencoderKL``; its decoder is removed here (DiffRIS only encodes).
        unet: a ``UNet2DConditionModel`` with four up blocks, the first three ending in an
            upsampler; its output head is removed here.

    Raises:
        InputError: the UNet does not have the Stable Diffusion 1.x decoder layout, or does not
            take the VAE's latents.
    """

    def __init__(self, vae: AutoencoderKL, unet: UNet2DConditionModel) -> None:
        super().__init__()
        _check_unet_layout(unet)
        latent, unet_in = int(vae.config["latent_channels"]), int(unet.config["in_channels"])
        if latent != unet_in:
            raise InputError(
                f"the VAE has latent_channels {latent} but the UNet has in_channels {unet_in}; "
                "use the VAE the UNet was trained with"
            )
        # Unused heads go: the VAE decoder, and the UNet's output norm/conv (the UNet's forward
        # skips a None ``conv_norm_out`` and ``conv_out`` becomes a no-op).
        vae.decoder = None  # type: ignore[assignment]
        vae.post_quant_conv = None  # type: ignore[assignment]
        unet.conv_norm_out = None  # type: ignore[assignment]
        unet.conv_act = None  # type: ignore[assignment]
        unet.conv_out = nn.Identity()  # type: ignore[assignment]
        self.vae = vae
        self.unet = unet
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Self:
        """Frozen: stays in eval mode whatever ``mode`` says (``model.train()`` recurses here)."""
        return super().train(False)

    @property
    def feature_channels(self) -> tuple[int, int, int, int]:
        """Channels of the four decoder-stage maps, coarse to fine (1280, 1280, 640, 320)."""
        channels = tuple(int(c) for c in reversed(self.unet.config["block_out_channels"]))
        return channels  # type: ignore[return-value]

    @property
    def latent_factor(self) -> int:
        """How many pixels one latent cell covers along each side (8 for Stable Diffusion)."""
        return 2 ** (len(self.vae.config["block_out_channels"]) - 1)

    @property
    def text_dim(self) -> int:
        """Width of the text features the UNet's cross-attention expects (768 for SD-1.5)."""
        return int(self.unet.config["cross_attention_dim"])

    @torch.no_grad()
    def encode(self, pixels: Tensor, *, latent_scale: float) -> Tensor:
        """Latents of images: the VAE posterior mean times ``latent_scale``.

        Args:
            pixels: (B, 3, H, W) float in [-1, 1].
            latent_scale: multiplier of the posterior mean (0.18215 is what SD's UNet saw).

        Returns:
            (B, 4, H/8, W/8) latents, without gradient.
        """
        weight = self.vae.encoder.conv_in.weight
        pixels = pixels.to(device=weight.device, dtype=weight.dtype)
        return self.vae.encode(pixels).latent_dist.mean * latent_scale

    def features(self, latents: Tensor, context: Tensor, *, timestep: int) -> list[Tensor]:
        """One UNet pass without noise at ``timestep``; the four decoder-stage outputs.

        Args:
            latents: (B, 4, h, w) from :meth:`encode`; h, w multiples of 8.
            context: (B, L, D) text features the UNet cross-attends to (F_r); gradients flow
                back into it.
            timestep: the diffusion timestep the UNet is told (no noise is added).

        Returns:
            Four maps coarse to fine: (B, C_k, h / 2^(3-k), w / 2^(3-k)) for k = 0..3, i.e.
            image strides 64, 32, 16, 8.
        """
        weight = self.unet.conv_in.weight
        latents = latents.to(device=weight.device, dtype=weight.dtype)
        steps = torch.full((latents.shape[0],), timestep, dtype=torch.long, device=weight.device)
        captured: list[Tensor | None] = [None] * NUM_STAGES
        handles = self._capture_into(captured)
        try:
            self.unet(latents, steps, encoder_hidden_states=context, return_dict=False)
        finally:
            for handle in handles:
                handle.remove()
        if any(item is None for item in captured):
            raise RuntimeError("UNet decoder hooks did not fire; is this UNet a SD-1.x layout?")
        return captured  # type: ignore[return-value]

    def _capture_into(self, captured: list[Tensor | None]) -> list[Any]:
        """Hooks (for one call) storing each stage's map at its own resolution in ``captured``.

        Registered per call rather than once, so that a deep copy of the model has no hooks
        pointing back at the original; they only record in the thread that registered them, so
        concurrent calls from other threads cannot mix their maps in.
        """
        owner = threading.get_ident()

        def before_upsampler(stage: int) -> Any:
            def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                if threading.get_ident() == owner:
                    captured[stage] = args[0] if args else kwargs["hidden_states"]

            return hook

        def after_block(stage: int) -> Any:
            def hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
                if threading.get_ident() == owner:
                    captured[stage] = output

            return hook

        handles = []
        for stage, block in enumerate(self.unet.up_blocks):
            if stage < NUM_STAGES - 1:
                # a hook on the block itself would see the map after its upsampler (2× larger)
                upsampler: nn.Module = block.upsamplers[0]  # type: ignore[index,assignment]
                hook = before_upsampler(stage)
                handles.append(upsampler.register_forward_pre_hook(hook, with_kwargs=True))
            else:
                handles.append(block.register_forward_hook(after_block(stage)))
        return handles


def _check_unet_layout(unet: UNet2DConditionModel) -> None:
    blocks = list(unet.up_blocks)
    upsampling = [getattr(block, "upsamplers", None) is not None for block in blocks]
    if len(blocks) != NUM_STAGES or upsampling != [True] * (NUM_STAGES - 1) + [False]:
        raise InputError(
            f"the UNet has {len(blocks)} up blocks (upsamplers: {upsampling}); DiffRIS needs the "
            "Stable Diffusion 1.x layout: 4 up blocks, each but the last ending in an upsampler"
        )


@dataclasses.dataclass
class SDComponents:
    """The four parts of a Stable Diffusion folder DiffRIS uses, as loaded (full, unfrozen).

    ``folder`` is the local folder they were read from (None: built in memory, or downloaded);
    it lets the backbone fingerprint be cached per weight file.
    """

    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_model: CLIPTextModel
    tokenizer: CLIPTokenizer
    folder: Path | None = None


def save_sd_components(components: SDComponents, folder: str | Path) -> Path:
    """Write ``components`` as a diffusers-layout folder (``unet/``, ``vae/``, ...), safetensors.

    Args:
        components: as returned by :func:`load_sd_components` or a preset builder, before the
            backbone strips the parts it does not use.
        folder: created if needed.

    Returns:
        ``folder`` as a path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    components.unet.save_pretrained(folder / "unet", safe_serialization=True)
    components.vae.save_pretrained(folder / "vae", safe_serialization=True)
    components.text_model.save_pretrained(folder / "text_encoder", safe_serialization=True)
    components.tokenizer.save_pretrained(folder / "tokenizer")
    return folder


def load_sd_components(source: str | Path, *, download: bool = False) -> SDComponents:
    """Load VAE, UNet, CLIP text model and tokenizer from a diffusers-layout folder.

    The architecture comes from each sub-folder's config, checked first (sizes bounded, the VAE's
    latent channels against the UNet's input, the text width against the UNet's cross-attention:
    :func:`diffris.models.diffris.sd_configs.check_sd_configs`); only safetensors weights are read (a
    folder with only pickled ``.bin`` weights is refused), and every tensor the parts need must
    be in them (diffusers would fill a missing one with random values). Weights are float32.

    Args:
        source: a local folder, or (only with ``download``) a Hugging Face Hub model id.
        download: allow fetching ``source`` from the Hub; off by default.

    Raises:
        WeightsNotFoundError: a sub-folder, its config or its safetensors weights are missing,
            malformed, or lack tensors.
        CheckpointMismatchError: the parts do not fit together.
    """
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    variants: dict[str, str | None] = dict.fromkeys(SD_WEIGHT_STEMS)
    folder: Path | None = None
    if not download:
        folder = Path(source)
        lookup = inspect_sd_folder(folder)
        if not folder.is_dir() or lookup.missing:
            missing = ", ".join(f"{name}/" for name in lookup.missing)
            raise WeightsNotFoundError(
                f"Stable Diffusion folder {folder} is incomplete: missing {missing} (expected the "
                f"diffusers layout {', '.join(f'{n}/' for n in SD_SUBFOLDERS)}); pass "
                f"--pretrained DIR or set {SD15_ENV} to a complete copy of Stable Diffusion 1.5"
            )
        check_sd_configs(folder)
        variants = {sub: _safetensors_variant(folder, sub) for sub in SD_WEIGHT_STEMS}
    common: dict[str, Any] = {
        "local_files_only": not download,
        "use_safetensors": True,
        "output_loading_info": True,
    }
    # Plain loading: the low-memory path needs accelerate and, without it, diffusers warns on
    # every load before falling back to this very path.
    plain: dict[str, Any] = {**common, "torch_dtype": torch.float32, "low_cpu_mem_usage": False}
    loaders: dict[str, tuple[Any, dict[str, Any]]] = {
        "unet": (UNet2DConditionModel, plain),
        "vae": (AutoencoderKL, plain),
        "text_encoder": (CLIPTextModel, {**common, "dtype": torch.float32}),
    }
    models: dict[str, Any] = {}
    with quiet_hub_libraries():
        for sub, (cls, options) in loaders.items():
            with load_errors(source, sub):
                model, info = cls.from_pretrained(
                    source, subfolder=sub, variant=variants[sub], **options
                )
            check_loading_info(source, sub, info)
            models[sub] = model
        with load_errors(source, "tokenizer"):
            tokenizer = CLIPTokenizer.from_pretrained(
                source, subfolder="tokenizer", local_files_only=not download
            )
    vae, unet, text_model = models["vae"], models["unet"], models["text_encoder"]
    vocab = int(text_model.config.vocab_size)
    if folder is not None and len(tokenizer) > vocab:
        raise CheckpointMismatchError(
            f"the tokenizer and the text encoder of {folder} do not fit: tokenizer/ has "
            f"{len(tokenizer)} tokens but text_encoder/config.json has vocab_size {vocab}; use "
            "the tokenizer the text encoder was trained with"
        )
    for model in (vae, unet, text_model):
        into_torch_memory(model)
    return SDComponents(
        vae=vae, unet=unet, text_model=text_model, tokenizer=tokenizer, folder=folder
    )


def _safetensors_variant(folder: Path, sub: str) -> str | None:
    """Which weight variant a sub-folder holds as safetensors: None (plain) or e.g. ``fp16``.

    Raises:
        WeightsNotFoundError: it holds none (pickles are never loaded), naming what it holds.
    """
    stem = SD_WEIGHT_STEMS[sub]
    directory = folder / sub
    variant = safetensors_variant(directory, stem)
    if variant is not None:
        return variant or None
    found = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
    raise WeightsNotFoundError(
        f"{directory} has no {stem}.safetensors (found: {found}); diffris never loads pickled "
        "weights: convert the folder to safetensors (e.g. save_pretrained(safe_serialization=True))"
    )
