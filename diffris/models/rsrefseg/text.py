"""SigLIP's tokenised prompts and text features, as RSRefSeg's stages pass them around."""

from __future__ import annotations

import dataclasses

from torch import Tensor

from diffris.models.prompt_rows import PromptRows


@dataclasses.dataclass(frozen=True)
class SiglipTokens(PromptRows):
    """Prompts as SigLIP token ids, padded with ``</s>`` to a fixed length (as SigLIP was trained).

    Attributes:
        input_ids: (P, L) int64.
        attention_mask: (P, L) int64, 1 for real tokens (words and the closing ``</s>``).
        truncated: per prompt, whether it was longer than L tokens and lost its tail.
    """

    input_ids: Tensor
    attention_mask: Tensor
    truncated: list[bool]


@dataclasses.dataclass(frozen=True)
class SiglipTextFeatures(PromptRows):
    """Encoded prompts (differentiable: the text tower carries LoRA).

    Attributes:
        local: (P, L, D) t, SigLIP text's last hidden state, one row per token.
        pooled: (P, D) g, its pooled output (the head on the last position).
        mask: (P, L) bool, True = real token, False = padding.
        truncated: per prompt, whether it lost tokens past ``max_tokens``.
    """

    local: Tensor
    pooled: Tensor
    mask: Tensor
    truncated: list[bool]
