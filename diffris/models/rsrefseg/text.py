"""SigLIP's tokenised prompts and text features, as RSRefSeg's stages pass them around."""

from __future__ import annotations

import dataclasses
from typing import Self

import torch
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class SiglipTokens:
    """Prompts as SigLIP token ids, padded with ``</s>`` to a fixed length (as SigLIP was trained).

    Attributes:
        input_ids: (P, L) int64.
        attention_mask: (P, L) int64, 1 for real tokens (words and the closing ``</s>``).
        truncated: per prompt, whether it was longer than L tokens and lost its tail.
    """

    input_ids: Tensor
    attention_mask: Tensor
    truncated: list[bool]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> Self:
        """A copy on ``device``."""
        return dataclasses.replace(
            self, input_ids=self.input_ids.to(device), attention_mask=self.attention_mask.to(device)
        )


@dataclasses.dataclass(frozen=True)
class SiglipTextFeatures:
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

    def __len__(self) -> int:
        return int(self.pooled.shape[0])

    def index_select(self, index: Tensor) -> Self:
        """Rows ``index`` (1-D int64), e.g. to pair B tiles × P prompts in one batch."""
        rows = index.to(self.pooled.device)
        return dataclasses.replace(
            self,
            local=self.local.index_select(0, rows),
            pooled=self.pooled.index_select(0, rows),
            mask=self.mask.index_select(0, rows),
            truncated=[self.truncated[i] for i in index.tolist()],
        )

    def repeat_interleave(self, repeats: int) -> Self:
        """Each prompt ``repeats`` times in a row: [a, b] -> [a, a, b, b] for 2."""
        return self.index_select(torch.arange(len(self)).repeat_interleave(repeats))

    def repeat(self, times: int) -> Self:
        """The whole batch ``times`` times: [a, b] -> [a, b, a, b] for 2."""
        return self.index_select(torch.arange(len(self)).repeat(times))

    def to(self, device: torch.device | str) -> Self:
        """A copy on ``device``."""
        return dataclasses.replace(
            self,
            local=self.local.to(device),
            pooled=self.pooled.to(device),
            mask=self.mask.to(device),
        )
