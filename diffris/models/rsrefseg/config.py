"""RSRefSeg's options, saved as ``config.json`` of a trained model (the design: the authors' code, as README's "The second model" describes it)."""

from __future__ import annotations

import dataclasses

from diffris.config import Config, check_at_most
from diffris.errors import InputError
from diffris.models.fingerprint import FINGERPRINT_SCHEME

#: Norms the prompter accepts: GroupNorm(32) (the default, safe for small batches) or BatchNorm
#: (the authors', synchronised across their 8 GPUs).
PROMPTER_NORMS = ("group", "batch")


@dataclasses.dataclass(frozen=True)
class RSRefSegIdentity(Config):
    """Which frozen SigLIP and SAM a model was built on; a trained model loads only onto them.

    Attributes:
        preset: the preset that built it (``rsrefseg-tiny``, ``rsrefseg-b``, ``rsrefseg-l``).
        fingerprint: hash of both fingerprints (see :mod:`diffris.models.fingerprint`); empty
            when unknown (built on the ``meta`` device).
        siglip_fingerprint: hash of SigLIP's weights (both towers, logit scale and bias).
        sam_fingerprint: hash of SAM's weights.
        fingerprint_scheme: how the fingerprints were computed (2: every tensor).
        clip_dim: width D of SigLIP's features (1152 for so400m); text and vision agree.
        sam_dim: width of SAM's image embedding, prompt encoder and mask decoder (256).
    """

    preset: str = "rsrefseg-tiny"
    fingerprint: str = ""
    siglip_fingerprint: str = ""
    sam_fingerprint: str = ""
    fingerprint_scheme: int = FINGERPRINT_SCHEME
    clip_dim: int = 0
    sam_dim: int = 0

    def __post_init__(self) -> None:
        check_at_most("backbone", self, {"clip_dim": 16384, "sam_dim": 16384})


@dataclasses.dataclass(frozen=True)
class RSRefSegConfig(Config):
    """Every option of an RSRefSeg model.

    Attributes:
        backbone: identity of the frozen SigLIP and SAM.
        mask_threshold: probability above which a pixel belongs to the mask.
        max_tokens: text tokens per prompt, padded to this length as SigLIP was trained
            (choice: 64, SigLIP's positions; the authors pad to the batch's longest).
        siglip_size: side SigLIP's vision tower sees (384 for so400m-patch14-384).
        sam_size: side SAM's image encoder sees (1024).
        lora_rank: LoRA rank r in the encoders.
        lora_alpha: LoRA alpha (the update is scaled by alpha / r).
        lora_dropout: dropout on the LoRA branch's input while training.
        down_spatial_times: stride-2 convolutions of the prompter (2: 27 -> 14 -> 7, 49 tokens).
        norm: the prompter's normalisation, ``group`` (choice) or ``batch`` (the authors').
        dense_prompt: feed the global activation logits to SAM as the dense (mask) prompt;
            False uses SAM's ``no_mask_embed`` (the paper's ablation).
        mask_padding: average the local activation over real tokens only (choice: False, as the
            authors, who count padding tokens too).
        text_lora: LoRA in SigLIP's text tower too (choice: True, as the authors); False keeps
            the text features fixed, so that training cannot pull two prompts together.
        context_layers: dilated 3×3 layers of a spatial context block on SAM's image embedding
            (:mod:`diffris.models.rsrefseg.context`; choice: 0, none, as the authors).
    """

    backbone: RSRefSegIdentity = dataclasses.field(default_factory=RSRefSegIdentity)
    mask_threshold: float = 0.5
    max_tokens: int = 64
    siglip_size: int = 384
    sam_size: int = 1024
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    down_spatial_times: int = 2
    norm: str = "group"
    dense_prompt: bool = True
    mask_padding: bool = False
    context_layers: int = 0
    text_lora: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.mask_threshold < 1:
            raise InputError(f"mask_threshold={self.mask_threshold} must be in (0, 1); e.g. 0.5")
        if self.max_tokens < 2:
            raise InputError(f"max_tokens={self.max_tokens} must be at least 2; e.g. 64")
        for name in ("siglip_size", "sam_size"):
            if getattr(self, name) < 16:
                raise InputError(f"{name}={getattr(self, name)} must be at least 16 px")
        if self.lora_rank < 1:
            raise InputError(f"lora_rank={self.lora_rank} must be a positive integer; e.g. 16")
        if not self.lora_alpha > 0:
            raise InputError(f"lora_alpha={self.lora_alpha} must be positive; e.g. 16")
        if not 0 <= self.lora_dropout < 1:
            raise InputError(f"lora_dropout={self.lora_dropout} must be in [0, 1); e.g. 0.1")
        if not 0 <= self.down_spatial_times <= 4:
            raise InputError(
                f"down_spatial_times={self.down_spatial_times} must be in 0..4; e.g. 2 (49 tokens)"
            )
        if not 0 <= self.context_layers <= 8:
            raise InputError(
                f"context_layers={self.context_layers} must be in 0..8; e.g. 0 (none) or 4"
            )
        if self.norm not in PROMPTER_NORMS:
            raise InputError(
                f"norm={self.norm!r} is not a prompter norm; choose one of: "
                f"{', '.join(PROMPTER_NORMS)}"
            )
        check_at_most(
            "RSRefSeg",
            self,
            {"max_tokens": 4096, "siglip_size": 4096, "sam_size": 4096, "lora_rank": 4096},
        )
