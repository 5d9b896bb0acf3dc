"""RSRefSeg: frozen SigLIP + SAM adapted with LoRA, text filters, a prompter and SAM's decoder.

The three stages the tile predictor caches: :meth:`RSRefSeg.encode_text` (SigLIP text, once per
prompt), :meth:`RSRefSeg.encode_image` (SAM's image embedding and SigLIP's map, once per tile),
:meth:`RSRefSeg.decode` (filters, prompter, SAM's prompt encoder and mask decoder: light, once
per (tile, prompt) pair). LoRA lives inside the encoders, so image features change while the
model trains (``image_features_frozen = False``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffris.errors import InputError
from diffris.models.preprocessing import to_model_range
from diffris.models.rsrefseg.config import RSRefSegConfig
from diffris.models.rsrefseg.context import ContextBlock
from diffris.models.rsrefseg.filters import text_filters
from diffris.models.rsrefseg.lora import LORA_MARKER, TARGETS, inject_lora, set_lora_dropout_mode
from diffris.models.rsrefseg.prompter import Prompter, grid_positional_encoding
from diffris.models.rsrefseg.text import SiglipTextFeatures, SiglipTokens
from diffris.models.state_checks import check_trainable_state

if TYPE_CHECKING:
    from diffris.models.rsrefseg.components import RSRefSegComponents

#: SAM's pixel normalisation (ImageNet statistics, on [0, 1] pixels).
SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)
#: SigLIP's pixel normalisation (on [0, 1] pixels): the [-1, 1] range.
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
#: Input sides must be multiples of this (any size works after the resizes; 16 keeps tiles
#: aligned with SAM's patch).
SIZE_MULTIPLE = 16
#: Prefixes of the parts trained in full.
HEAD_PARTS = ("prompter.", "context.", "sam.prompt_encoder.", "sam.mask_decoder.")
#: Head tensors RSRefSeg never uses (SAM's point/box embeddings and IoU head): kept frozen, so
#: that every trainable parameter gets a gradient (plain DDP), but stored with the heads.
IDLE_HEAD_PARTS = (
    "sam.prompt_encoder.point_embed.",
    "sam.prompt_encoder.not_a_point_embed.",
    "sam.mask_decoder.iou_prediction_head.",
)

#: The SigLIP text tower's path (its LoRA is optional: ``text_lora``).
TEXT_TOWER = "siglip.text_model"
#: Image features: (SAM embedding (B, C, 64, 64), SigLIP map (B, D, g, g), input size (B, 2)).
RSRefSegImageFeatures = tuple[Tensor, Tensor, Tensor]


class RSRefSeg(nn.Module):
    """Referring segmentation with SigLIP's text as filters prompting SAM.

    Args:
        components: SigLIP (both towers), its tokenizer and SAM; the model takes ownership,
            freezes them and adds LoRA to the listed encoder modules.
        config: every option; its ``backbone`` identity describes ``components``.

    Raises:
        InputError: the parts do not fit together (SigLIP widths, SAM widths).
    """

    architecture = "rsrefseg"
    image_features_frozen = False

    def __init__(self, components: RSRefSegComponents, config: RSRefSegConfig) -> None:
        super().__init__()
        siglip, sam = components.siglip, components.sam
        clip_dim = int(siglip.config.vision_config.hidden_size)
        text_dim = int(siglip.config.text_config.hidden_size)
        sam_dim = int(sam.config.vision_config.output_channels)
        widths = {sam_dim, int(sam.config.prompt_encoder_config.hidden_size)}
        widths.add(int(sam.config.mask_decoder_config.hidden_size))
        if text_dim != clip_dim or len(widths) > 1:
            raise InputError(
                f"RSRefSeg parts disagree: SigLIP text width {text_dim} vs vision {clip_dim}; "
                f"SAM image/prompt/decoder widths {sorted(widths)}; they must match"
            )
        if config.backbone.clip_dim not in (0, clip_dim) or config.backbone.sam_dim not in (
            0,
            sam_dim,
        ):
            raise InputError(
                f"config backbone widths ({config.backbone.clip_dim}, {config.backbone.sam_dim}) "
                f"do not describe these parts ({clip_dim}, {sam_dim})"
            )
        self.siglip = siglip
        self.sam = sam
        self.tokenizer = components.tokenizer
        self.config = config
        self.requires_grad_(False)
        for path, target in self.lora_targets().items():
            inject_lora(
                self.get_submodule(path),
                target,
                rank=config.lora_rank,
                alpha=config.lora_alpha,
                dropout=config.lora_dropout,
            )
        # SAM's prompt encoder and mask decoder are trained in full; the prompt encoder's
        # positional embedding is tied to SamModel.shared_image_embedding (one parameter).
        sam.prompt_encoder.requires_grad_(True)
        sam.mask_decoder.requires_grad_(True)
        unused_prompt = "no_mask_embed." if config.dense_prompt else "mask_embed."
        idle = (*IDLE_HEAD_PARTS, f"sam.prompt_encoder.{unused_prompt}")
        for name, param in self.named_parameters(remove_duplicate=False):
            if name.startswith(idle):
                param.requires_grad_(False)
        self.prompter = Prompter(
            3 * clip_dim, sam_dim, down_spatial_times=config.down_spatial_times, norm=config.norm
        ).to(sam.mask_decoder.iou_token.weight.device)
        # built after the prompter, so that a model without it draws the same initial weights
        self.context = (
            ContextBlock(sam_dim, config.context_layers).to(self.prompter.out.weight.device)
            if config.context_layers
            else None
        )
        self.train(False)

    @property
    def device(self) -> torch.device:
        """Where the model lives (its prompter's weights)."""
        return self.prompter.out.weight.device

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of 16 px (both encoders resize, so any size works)."""
        return SIZE_MULTIPLE

    # -- pre-processing -------------------------------------------------------------------------

    def preprocess(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 (or float in [0, 255]) -> float32 in [-1, 1], size checked."""
        self._check_pixels(images)
        return to_model_range(images)

    def tokenize(self, texts: Sequence[str]) -> SiglipTokens:
        """SigLIP token ids of ``texts``, padded to ``max_tokens`` (``truncated`` flags long ones).

        Raises:
            InputError: ``texts`` is a single string, empty, or holds something else.
        """
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise InputError(
                f"texts must be a list of strings, got {type(texts).__name__}; "
                "wrap a single prompt as [text]"
            )
        if not texts:
            raise InputError("texts is empty; give at least one prompt")
        texts = list(texts)
        limit = self.config.max_tokens
        truncated = [len(ids) > limit for ids in self.tokenizer(texts)["input_ids"]]
        encoded = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=limit, return_tensors="pt"
        )
        ids = encoded["input_ids"].to(torch.int64)
        mask = encoded.get("attention_mask")
        mask = (torch.ones_like(ids) if mask is None else mask).to(torch.int64)
        return SiglipTokens(input_ids=ids, attention_mask=mask, truncated=truncated)

    # -- the steps ------------------------------------------------------------------------------

    def encode_text(self, texts: Sequence[str] | SiglipTokens) -> SiglipTextFeatures:
        """Local tokens t and pooled g from SigLIP text (with LoRA: differentiable).

        SigLIP reads the padded sequence without an attention mask, as it was trained.
        """
        tokens = texts if isinstance(texts, SiglipTokens) else self.tokenize(texts)
        tokens = tokens.to(self.device)
        output = self.siglip.text_model(input_ids=tokens.input_ids)
        # SigLIP's pooled output is its head on the last position. A linear layer on one row
        # takes another kernel than on several (the last bits differ), so the head runs one
        # prompt at a time: a prompt's features are the same whichever prompts share its run.
        last = output.last_hidden_state[:, -1, :]
        pooled = torch.cat([self.siglip.text_model.head(row) for row in last.split(1)])
        return SiglipTextFeatures(
            local=output.last_hidden_state,
            pooled=pooled,
            mask=tokens.attention_mask.to(torch.bool),
            truncated=tokens.truncated,
        )

    def encode_image(self, pixels: Tensor) -> RSRefSegImageFeatures:
        """SAM's image embedding, SigLIP's map and the input size of pixels in [-1, 1].

        Args:
            pixels: (B, 3, H, W) float in [-1, 1]; H, W multiples of 16.

        Returns:
            ``(sam_embedding (B, C, 64, 64), clip_map (B, D, g, g), size (B, 2) int64 (H, W))``;
            the size rides along, on the host, so that :meth:`decode` returns logits at the
            input size.
            Differentiable in the LoRA weights.
        """
        self._check_pixels(pixels)
        unit = (pixels.float() + 1) / 2
        sam_in = _resize_normalise(unit, self.config.sam_size, SAM_MEAN, SAM_STD)
        clip_in = _resize_normalise(unit, self.config.siglip_size, SIGLIP_MEAN, SIGLIP_STD)
        embedding = self.sam.vision_encoder(sam_in).last_hidden_state
        if self.context is not None:
            embedding = self.context(embedding)
        tokens = self.siglip.vision_model(pixel_values=clip_in).last_hidden_state
        side = math.isqrt(tokens.shape[1])
        clip_map = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
        # on the host: decode reads it as Python ints, which on a device would wait for it
        size = torch.tensor([list(pixels.shape[-2:])], dtype=torch.int64)
        return embedding, clip_map, size.expand(pixels.shape[0], 2)

    def decode(self, image: RSRefSegImageFeatures, text: SiglipTextFeatures) -> Tensor:
        """Mask logits for (image, prompt) pairs: filters -> prompter -> SAM's decoder.

        Args:
            image: :meth:`encode_image` output for B images (rows of one input size).
            text: B prompts paired row by row (or 1, used for every image).

        Returns:
            (B, 1, H, W) float32 logits at the input size.
        """
        embedding, clip_map, size = image
        batch = int(embedding.shape[0])
        text = self._match_batch(text, batch)
        height, width = (int(value) for value in size[0].tolist())
        if bool((size != size[0]).any()):
            raise InputError("decode got image rows of different input sizes; decode them apart")
        features, global_logits = text_filters(
            clip_map,
            text.local,
            text.pooled,
            text.mask,
            scale=self.siglip.logit_scale.exp(),
            bias=self.siglip.logit_bias,
            mask_padding=self.config.mask_padding,
        )
        shared = self.sam.prompt_encoder.shared_embedding
        grid = grid_positional_encoding(shared, *features.shape[-2:])
        sparse = self.prompter(features, grid).to(embedding.dtype)
        dense = self._dense_prompt(global_logits, embedding)
        image_pe = grid_positional_encoding(shared, *embedding.shape[-2:]).to(embedding.dtype)
        masks = self.sam.mask_decoder(
            image_embeddings=embedding,
            image_positional_embeddings=image_pe.expand(batch, -1, -1, -1),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )[0]  # by index: the tuple's length changed across transformers versions
        logits = masks[:, 0].float()
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)

    def forward(self, pixels: Tensor, texts: Sequence[str] | SiglipTextFeatures) -> Tensor:
        """``decode(encode_image(pixels), encode_text(texts))``: (B, 1, H, W) float32 logits."""
        image = self.encode_image(pixels)
        text = texts if isinstance(texts, SiglipTextFeatures) else self.encode_text(texts)
        return self.decode(image, text)

    # -- post-processing ------------------------------------------------------------------------

    @torch.no_grad()
    def predict_proba(self, pixels: Tensor, texts: Sequence[str] | SiglipTextFeatures) -> Tensor:
        """(B, 1, H, W) float32 probabilities in [0, 1]; see :meth:`forward`."""
        return torch.sigmoid(self(pixels, texts).float())

    def postprocess(self, logits: Tensor, threshold: float | None = None) -> Tensor:
        """Binary masks: probability above ``threshold`` (default ``config.mask_threshold``)."""
        threshold = self.config.mask_threshold if threshold is None else threshold
        if not 0 < threshold < 1:
            raise InputError(f"mask threshold {threshold} must be in (0, 1); e.g. 0.5")
        return logits > math.log(threshold / (1 - threshold))

    # -- training and saving --------------------------------------------------------------------

    def train(self, mode: bool = True) -> Self:
        """Training mode for the prompter, prompt encoder, mask decoder and LoRA dropouts;
        the frozen encoders stay in eval mode."""
        super().train(mode)
        self.siglip.eval()
        self.sam.eval()
        for part in (self.sam.prompt_encoder, self.sam.mask_decoder):
            part.train(mode)
        for path in self.lora_targets():
            set_lora_dropout_mode(self.get_submodule(path), mode)
        return self

    def lora_targets(self) -> dict[str, str]:
        """Tower path -> LoRA target pattern (:data:`TARGETS`; without the text tower when
        ``config.text_lora`` is off)."""
        if self.config.text_lora:
            return dict(TARGETS)
        return {path: target for path, target in TARGETS.items() if path != TEXT_TOWER}

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Sub-modules that together hold every trainable parameter (the towers hold LoRA)."""
        modules: dict[str, nn.Module] = {"prompter": self.prompter}
        if self.context is not None:
            modules["context"] = self.context
        modules["sam_prompt_encoder"] = self.sam.prompt_encoder
        modules["sam_mask_decoder"] = self.sam.mask_decoder
        for path in self.lora_targets():
            modules[path.replace(".", "_")] = self.get_submodule(path)
        return modules

    @staticmethod
    def is_trainable_name(name: str) -> bool:
        """Whether a state-dict name belongs to the stored parts (LoRA or a head)."""
        return LORA_MARKER in name or name.startswith(HEAD_PARTS)

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of LoRA, prompter, prompt encoder and mask decoder.

        Names as in :meth:`trainable_state_dict`; SAM's tied positional embedding appears once,
        as ``sam.prompt_encoder.shared_embedding.positional_embedding``. The head tensors that
        RSRefSeg never uses (:data:`IDLE_HEAD_PARTS`, and SAM's ``no_mask_embed`` or, with
        ``dense_prompt=False``, ``mask_embed``) are stored but not trained: every parameter
        listed here receives a gradient.
        """
        seen: set[int] = set()
        for name, param in self.named_parameters(remove_duplicate=False):
            trainable = self.is_trainable_name(name) and param.requires_grad
            if trainable and id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimiser should see."""
        return [param for _, param in self.named_trainable_parameters()]

    def trainable_parameter_count(self) -> int:
        """Trainable scalars (LoRA + prompter + SAM prompt encoder + SAM mask decoder)."""
        return sum(param.numel() for param in self.trainable_parameters())

    def frozen_parameter_count(self) -> int:
        """Frozen scalars (SigLIP and SAM base weights, and the idle head tensors)."""
        trainable = {id(param) for param in self.trainable_parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in trainable)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """LoRA tensors and the heads' weights and buffers: what a trained folder stores."""
        return {k: v for k, v in self.state_dict().items() if self.is_trainable_name(k)}

    def load_trainable_state_dict(self, state: dict[str, Tensor], *, source: str = "") -> None:
        """Load :meth:`trainable_state_dict` output, checking every name and shape first.

        Raises:
            CheckpointMismatchError: listing *all* missing, unexpected and mis-shaped tensors.
        """
        expected = self.trainable_state_dict()
        check_trainable_state(expected, state, source=source, options="LoRA/prompter")
        with torch.no_grad():
            for name, tensor in expected.items():  # state_dict tensors share the live storage
                tensor.copy_(state[name])

    # -- helpers --------------------------------------------------------------------------------

    def _dense_prompt(self, global_logits: Tensor, embedding: Tensor) -> Tensor:
        """Global logits upsampled to 4× the embedding side, through ``mask_embed``; or SAM's
        ``no_mask_embed`` with ``dense_prompt=False``."""
        encoder = self.sam.prompt_encoder
        if not self.config.dense_prompt:
            weight = encoder.no_mask_embed.weight.to(embedding.dtype)
            return weight.reshape(1, -1, 1, 1).expand(embedding.shape[0], -1, *embedding.shape[-2:])
        side = (4 * embedding.shape[-2], 4 * embedding.shape[-1])
        masks = F.interpolate(global_logits, size=side, mode="bilinear", align_corners=False)
        return encoder.mask_embed(masks.to(embedding.dtype))

    def _check_pixels(self, pixels: Tensor) -> None:
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise InputError(
                f"images must be (B, 3, H, W) RGB; got shape {tuple(pixels.shape)}; "
                "select three bands and add a batch dimension"
            )
        for name, value in zip(("height", "width"), pixels.shape[-2:], strict=True):
            if value <= 0 or value % SIZE_MULTIPLE:
                nearest = max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)
                raise InputError(
                    f"input {name} {value} px is not a multiple of {SIZE_MULTIPLE}; "
                    f"resize or tile to e.g. {nearest}"
                )

    @staticmethod
    def _match_batch(text: SiglipTextFeatures, batch: int) -> SiglipTextFeatures:
        if len(text) == batch:
            return text
        if len(text) == 1:
            return text.repeat(batch)
        raise InputError(
            f"{len(text)} prompts for {batch} images; give one prompt per image, or a single "
            "prompt for all (use SiglipTextFeatures.index_select to pair them)"
        )


def _resize_normalise(
    unit: Tensor, side: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Tensor:
    """[0, 1] pixels resized (bilinear, aspect not kept) to ``side``² and normalised."""
    if unit.shape[-2:] != (side, side):
        unit = F.interpolate(unit, size=(side, side), mode="bilinear", align_corners=False)
    # built on the host and sent without waiting (torch.tensor(device=...) would block on it)
    mean_t = torch.tensor(mean, dtype=unit.dtype).to(unit.device, non_blocking=True)
    std_t = torch.tensor(std, dtype=unit.dtype).to(unit.device, non_blocking=True)
    mean_t, std_t = mean_t.view(1, 3, 1, 1), std_t.view(1, 3, 1, 1)
    return (unit - mean_t) / std_t
