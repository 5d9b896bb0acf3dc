"""DiffRIS: the composed model (frozen SD-1.5 backbone + CLIP text, trainable CP-adapter + PCMRD).

Like SAM's ``Sam``, the model receives its parts already built (see :mod:`diffris.models.diffris.build`)
and owns its pre- and post-processing, so that the tile predictor, training and evaluation cannot
drift apart. The steps are exposed separately because the tile predictor caches them: text
features once per prompt (:meth:`DiffRIS.encode_text`), the VAE latent once per tile
(:meth:`DiffRIS.encode_image`), then one UNet pass + decoder per (tile, prompt) pair
(:meth:`DiffRIS.decode`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from diffris.config import Config, check_at_most
from diffris.errors import InputError
from diffris.messages import cut
from diffris.models.diffris.backbone import FrozenBackbone
from diffris.models.diffris.cp_adapter import CPAdapter, CPAdapterConfig
from diffris.models.diffris.pcmrd import PCMRD, PCMRDConfig
from diffris.models.diffris.text_encoder import MAX_TOKENS, FrozenTextEncoder, TokenBatch
from diffris.models.preprocessing import check_input_size, to_model_range
from diffris.models.prompt_rows import PromptRows
from diffris.models.state_checks import check_trainable_state

#: Prefixes of the trainable parts in :meth:`DiffRIS.trainable_state_dict`.
TRAINABLE_PARTS = ("cp_adapter", "decoder")


@dataclasses.dataclass(frozen=True)
class BackboneIdentity(Config):
    """Which frozen backbone a model was built on; a trained model only loads onto the same one.

    Attributes:
        preset: the preset that built it (``tiny``, ``sd15``).
        fingerprint: hash of the frozen weights (see :mod:`diffris.models.fingerprint`);
            empty when unknown (built on the ``meta`` device).
        text_dim: width D of the text features (768 for SD-1.5).
        feature_channels: channels of the four UNet decoder maps, coarse to fine.
        fingerprint_scheme: how ``fingerprint`` was computed: 2 hashes every tensor; 1 (what a
            config without this field was written with, by older diffris) three per module.
    """

    preset: str = "tiny"
    fingerprint: str = ""
    text_dim: int = 0
    feature_channels: tuple[int, ...] = ()
    fingerprint_scheme: int = 1

    def __post_init__(self) -> None:
        check_at_most("backbone", self, {"text_dim": 16384})
        if any(not 0 < channels <= 16384 for channels in self.feature_channels):
            raise InputError(
                f"backbone feature_channels={cut(self.feature_channels)} must be in 1..16384"
            )


@dataclasses.dataclass(frozen=True)
class DiffRISConfig(Config):
    """Every option of a DiffRIS model; saved as ``config.json`` of a trained model.

    Attributes:
        backbone: identity of the frozen backbone.
        latent_scale: multiplier of the VAE posterior mean (choice: 0.18215, what SD-1.5's UNet
            was trained on; VPD uses 1.0, the unscaled mean). A preset built without an
            explicit value takes the VAE config's ``scaling_factor``; a trained model keeps the
            value it was trained with.
        timestep: the timestep the UNet is told on its single noise-free pass (choice: 1, as VPD).
        max_tokens: text tokens per prompt (CLIP: 77).
        mask_threshold: probability above which a pixel belongs to the mask.
        cp_adapter: CP-adapter sizes and switches.
        pcmrd: decoder sizes and switches.
    """

    backbone: BackboneIdentity = dataclasses.field(default_factory=BackboneIdentity)
    latent_scale: float = 0.18215
    timestep: int = 1
    max_tokens: int = MAX_TOKENS
    mask_threshold: float = 0.5
    cp_adapter: CPAdapterConfig = dataclasses.field(default_factory=CPAdapterConfig)
    pcmrd: PCMRDConfig = dataclasses.field(default_factory=PCMRDConfig)

    def __post_init__(self) -> None:
        if not self.latent_scale > 0:
            raise InputError(f"latent_scale={self.latent_scale} must be positive; e.g. 0.18215")
        if not 0 <= self.timestep < 1000:
            raise InputError(f"timestep={self.timestep} is outside the UNet's 0..999; e.g. 1")
        if not 0 < self.mask_threshold < 1:
            raise InputError(f"mask_threshold={self.mask_threshold} must be in (0, 1); e.g. 0.5")
        check_at_most("DiffRIS", self, {"latent_scale": 100.0, "max_tokens": 4096})


@dataclasses.dataclass(frozen=True)
class TextFeatures(PromptRows):
    """Encoded prompts.

    Attributes:
        hidden: (P, L, D) F_l, CLIP's last hidden state (no gradient).
        refined: (P, L, D) F_r, after the CP-adapter (differentiable); what the UNet and the
            decoder read.
        mask: (P, L) bool, True = real token (start, words, end), False = padding.
        truncated: per prompt, whether it lost tokens past ``max_tokens``.
    """

    hidden: Tensor
    refined: Tensor
    mask: Tensor
    truncated: list[bool]


class DiffRIS(nn.Module):
    """Referring segmentation with a frozen diffusion backbone (a
    :class:`~diffris.models.interface.ReferringModel`).

    Args:
        backbone: frozen VAE encoder + UNet.
        text_encoder: frozen CLIP tokenizer + text model.
        cp_adapter: trainable text refinement F_l -> F_r.
        decoder: trainable PCMRD mask decoder.
        config: all options; its ``backbone`` identity must describe ``backbone``.

    Raises:
        InputError: the parts do not fit together (text width, feature channels).
    """

    def __init__(
        self,
        *,
        backbone: FrozenBackbone,
        text_encoder: FrozenTextEncoder,
        cp_adapter: CPAdapter,
        decoder: PCMRD,
        config: DiffRISConfig,
    ) -> None:
        super().__init__()
        expected = config.backbone
        widths = {text_encoder.dim, backbone.text_dim, cp_adapter.dim, decoder.text_dim}
        if widths != {expected.text_dim}:
            raise InputError(
                f"DiffRIS parts disagree on the text width: text encoder {text_encoder.dim}, UNet "
                f"cross-attention {backbone.text_dim}, CP-adapter {cp_adapter.dim}, decoder "
                f"{decoder.text_dim}, config {expected.text_dim}"
            )
        channels = tuple(expected.feature_channels)
        if backbone.feature_channels != channels or decoder.feature_channels != channels:
            raise InputError(
                f"DiffRIS parts disagree on the feature channels: UNet {backbone.feature_channels}"
                f", decoder {decoder.feature_channels}, config {channels}"
            )
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.cp_adapter = cp_adapter
        self.decoder = decoder
        self.config = config

    #: Recorded in a trained folder's ``config.json``.
    architecture = "diffris"
    #: The VAE latent has no trainable part: training may encode each image once.
    image_features_frozen = True

    @property
    def device(self) -> torch.device:
        """Where the trainable parts (and, normally, the whole model) live."""
        return self.cp_adapter.fusion_logit.device

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this many pixels (64: the coarsest feature stride)."""
        return self.backbone.latent_factor * 2 ** (len(self.backbone.feature_channels) - 1)

    # -- pre-processing -------------------------------------------------------------------------

    def preprocess(self, images: Tensor) -> Tensor:
        """8-bit RGB images to the model's input range, checking their size.

        Args:
            images: (B, 3, H, W) uint8, or float in [0, 255]; H and W multiples of 64.

        Returns:
            (B, 3, H, W) float32 in [-1, 1], on the device of ``images``.

        Raises:
            InputError: not (B, 3, H, W), or a side is not a multiple of 64 px.
        """
        self._check_pixels(images)
        return to_model_range(images)

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        """Token ids of ``texts`` (77 per prompt, padded; ``truncated`` flags long prompts)."""
        return self.text_encoder.tokenize(texts)

    # -- the steps ------------------------------------------------------------------------------

    def encode_text(self, texts: Sequence[str] | TokenBatch) -> TextFeatures:
        """F_l from the frozen CLIP text model and F_r from the CP-adapter.

        Args:
            texts: P prompts, or their :meth:`tokenize` output.

        Returns:
            Features on the model's device; ``refined`` carries gradients to the CP-adapter.
        """
        tokens = texts if isinstance(texts, TokenBatch) else self.tokenize(texts)
        tokens = tokens.to(self.device)
        hidden = self.text_encoder(tokens)
        mask = tokens.attention_mask.to(torch.bool)
        refined = self.cp_adapter(hidden, mask)
        return TextFeatures(hidden=hidden, refined=refined, mask=mask, truncated=tokens.truncated)

    def encode_image(self, pixels: Tensor) -> Tensor:
        """Latents of images: the frozen VAE encoder's posterior mean times ``latent_scale``.

        Args:
            pixels: (B, 3, H, W) float in [-1, 1] (see :meth:`preprocess`); H, W multiples of 64.

        Returns:
            (B, 4, H/8, W/8) latents, without gradient.
        """
        self._check_pixels(pixels)
        return self.backbone.encode(pixels, latent_scale=self.config.latent_scale)

    def image_features(self, latents: Tensor, text: TextFeatures) -> list[Tensor]:
        """The four UNet decoder-stage maps, from one noise-free pass conditioned on F_r.

        Args:
            latents: (B, 4, h, w) from :meth:`encode_image`.
            text: B prompts (or 1, used for every image).

        Returns:
            Four maps coarse to fine, strides 64, 32, 16, 8 of the image, e.g. for SD-1.5 at
            512²: (B, 1280, 8, 8), (B, 1280, 16, 16), (B, 640, 32, 32), (B, 320, 64, 64).
        """
        text = self._match_batch(text, latents.shape[0])
        return self.backbone.features(latents, text.refined, timestep=self.config.timestep)

    def decode(self, latents: Tensor, text: TextFeatures) -> Tensor:
        """Mask logits for (image, prompt) pairs: UNet features -> PCMRD.

        Args:
            latents: (B, 4, h, w) from :meth:`encode_image`.
            text: B prompts paired with the latents row by row (or 1, used for every image).

        Returns:
            (B, 1, 8h, 8w) float32 logits at the input resolution.
        """
        text = self._match_batch(text, latents.shape[0])
        features = self.backbone.features(latents, text.refined, timestep=self.config.timestep)
        factor = self.backbone.latent_factor
        size = (int(latents.shape[-2]) * factor, int(latents.shape[-1]) * factor)
        return self.decoder(features, text.refined, text.mask, size)

    def forward(self, pixels: Tensor, texts: Sequence[str] | TextFeatures) -> Tensor:
        """Mask logits for images and their prompts (one prompt per image, or one for all).

        Args:
            pixels: (B, 3, H, W) float in [-1, 1]; H, W multiples of 64.
            texts: B prompts (or 1), as strings or :meth:`encode_text` output.

        Returns:
            (B, 1, H, W) float32 logits; sigmoid gives the probability of the referred object.
        """
        latents = self.encode_image(pixels)
        text = texts if isinstance(texts, TextFeatures) else self.encode_text(texts)
        return self.decode(latents, text)

    # -- post-processing ------------------------------------------------------------------------

    @torch.no_grad()
    def predict_proba(self, pixels: Tensor, texts: Sequence[str] | TextFeatures) -> Tensor:
        """(B, 1, H, W) float32 probabilities in [0, 1]; see :meth:`forward`."""
        return torch.sigmoid(self(pixels, texts).float())

    def postprocess(self, logits: Tensor, threshold: float | None = None) -> Tensor:
        """Binary masks from logits: probability above ``threshold`` (default the config's).

        Args:
            logits: (B, 1, H, W) from :meth:`forward` or :meth:`decode`.
            threshold: probability in (0, 1); None uses ``config.mask_threshold``.

        Returns:
            (B, 1, H, W) bool.
        """
        threshold = self.config.mask_threshold if threshold is None else threshold
        if not 0 < threshold < 1:
            raise InputError(f"mask threshold {threshold} must be in (0, 1); e.g. 0.5")
        # sigmoid(x) > p  <=>  x > logit(p): no sigmoid over the whole map
        return logits > math.log(threshold / (1 - threshold))

    # -- training helpers -----------------------------------------------------------------------

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The CP-adapter and the decoder: every trainable parameter, none of the backbone."""
        return {part: getattr(self, part) for part in TRAINABLE_PARTS}

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of the CP-adapter and the decoder, names as in the state dict."""
        for part in TRAINABLE_PARTS:
            for name, param in getattr(self, part).named_parameters():
                yield f"{part}.{name}", param

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimiser should see: CP-adapter and decoder only."""
        return [param for _, param in self.named_trainable_parameters()]

    def trainable_parameter_count(self) -> int:
        """Number of trainable scalars (CP-adapter + decoder)."""
        return sum(param.numel() for param in self.trainable_parameters())

    def frozen_parameter_count(self) -> int:
        """Number of frozen scalars (VAE encoder, UNet without its output head, text model)."""
        parts = (self.backbone, self.text_encoder)
        return sum(param.numel() for part in parts for param in part.parameters())

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Weights and buffers of the trainable parts (``cp_adapter.*``, ``decoder.*``)."""
        state: dict[str, Tensor] = {}
        for part in TRAINABLE_PARTS:
            for name, tensor in getattr(self, part).state_dict().items():
                state[f"{part}.{name}"] = tensor
        return state

    def load_trainable_state_dict(self, state: dict[str, Tensor], *, source: str = "") -> None:
        """Load :meth:`trainable_state_dict` output, checking every name and shape first.

        Args:
            state: name -> tensor.
            source: where ``state`` came from, for the error message.

        Raises:
            CheckpointMismatchError: listing *all* missing, unexpected and mis-shaped tensors.
        """
        expected = self.trainable_state_dict()
        check_trainable_state(expected, state, source=source, options="cp_adapter/pcmrd")
        for part in TRAINABLE_PARTS:
            prefix = f"{part}."
            part_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            getattr(self, part).load_state_dict(part_state, strict=True)

    # -- checks ---------------------------------------------------------------------------------

    def _check_pixels(self, pixels: Tensor) -> None:
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise InputError(
                f"images must be (B, 3, H, W) RGB; got shape {tuple(pixels.shape)}; "
                "select three bands and add a batch dimension"
            )
        check_input_size(int(pixels.shape[-2]), int(pixels.shape[-1]))

    @staticmethod
    def _match_batch(text: TextFeatures, batch: int) -> TextFeatures:
        if len(text) == batch:
            return text
        if len(text) == 1:
            return text.repeat(batch)
        raise InputError(
            f"{len(text)} prompts for {batch} images; give one prompt per image, or a single "
            "prompt for all (use TextFeatures.index_select to pair them)"
        )
