"""The frozen CLIP text encoder and its tokenizer: prompts -> F_l (B, L, D).

Stable Diffusion 1.5 conditions its UNet on the ``last_hidden_state`` of CLIP ViT-L/14's text
tower over 77 tokens padded to full length; DiffRIS reads the same features (F_l) and refines them
with the CP-adapter. Like Stable Diffusion, the text model is run without a padding mask (its
causal mask already keeps padding from touching real tokens, and the UNet was trained on the
padding positions' outputs too); the attention mask is returned for the trainable parts instead.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

import torch
from torch import Tensor, nn

from diffris.errors import InputError
from diffris.models.prompt_rows import PromptRows

if TYPE_CHECKING:
    from transformers import CLIPTextModel, CLIPTokenizer

logger = logging.getLogger(__name__)

#: CLIP's context length: every prompt becomes exactly this many token positions.
MAX_TOKENS = 77


def bundled_tokenizer_dir() -> Path:
    """The CLIP BPE tokenizer files shipped with diffris (see its README for the source)."""
    return Path(str(importlib.resources.files("diffris") / "assets" / "clip_tokenizer"))


def load_bundled_tokenizer() -> CLIPTokenizer:
    """The real CLIP tokenizer (49,408 tokens) from the files shipped with diffris."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(bundled_tokenizer_dir())


@dataclasses.dataclass(frozen=True)
class TokenBatch(PromptRows):
    """Prompts as token ids, padded (and truncated) to a fixed length.

    Attributes:
        input_ids: (B, L) int64 token ids, ``<|startoftext|>`` first, padded with
            ``<|endoftext|>``.
        attention_mask: (B, L) int64, 1 for real tokens (start, words, end), 0 for padding.
        truncated: per prompt, whether it was longer than L tokens and lost its tail.
    """

    input_ids: Tensor
    attention_mask: Tensor
    truncated: list[bool]


class FrozenTextEncoder(nn.Module):
    """CLIP tokenizer + text model, frozen and always in eval mode.

    Args:
        model: the CLIP text tower (``CLIPTextModel``); its weights are frozen here.
        tokenizer: the matching CLIP tokenizer.
        max_tokens: tokens per prompt, at most the model's position embeddings (77 for CLIP).

    Raises:
        InputError: ``max_tokens`` exceeds what the model's position embeddings allow.
    """

    def __init__(
        self, model: CLIPTextModel, tokenizer: CLIPTokenizer, *, max_tokens: int = MAX_TOKENS
    ) -> None:
        super().__init__()
        positions = int(model.config.max_position_embeddings)
        if not 2 <= max_tokens <= positions:
            raise InputError(
                f"max_tokens {max_tokens} is outside 2..{positions}, the text encoder's "
                f"position embeddings; use e.g. {min(MAX_TOKENS, positions)}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> Self:
        """Frozen: stays in eval mode whatever ``mode`` says (``model.train()`` recurses here)."""
        return super().train(False)

    @property
    def dim(self) -> int:
        """Width D of the text features (768 for CLIP ViT-L/14)."""
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        """Token ids for ``texts``, padded to ``max_tokens`` and truncated past it.

        Args:
            texts: B prompts; an empty string is allowed (start and end tokens only).

        Returns:
            The batch on the CPU; ``truncated`` says which prompts lost tokens, so that callers
            can warn (the library itself only logs at debug level).

        Raises:
            InputError: ``texts`` is a single string or holds something other than strings.
        """
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise InputError(
                f"texts must be a list of strings, got {type(texts).__name__}; "
                "wrap a single prompt as [text]"
            )
        if not texts:
            raise InputError("texts is empty; give at least one prompt")
        texts = list(texts)
        lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
        truncated = [length > self.max_tokens for length in lengths]
        if any(truncated):
            logger.debug(
                "%d of %d prompts truncated to %d tokens",
                sum(truncated),
                len(texts),
                self.max_tokens,
            )
        encoded = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        return TokenBatch(
            input_ids=encoded["input_ids"].long(),
            attention_mask=encoded["attention_mask"].long(),
            truncated=truncated,
        )

    @torch.no_grad()
    def forward(self, tokens: TokenBatch) -> Tensor:
        """F_l, CLIP's last hidden state.

        Args:
            tokens: from :meth:`tokenize`.

        Returns:
            (B, L, D) float features, without gradient (the encoder is frozen).
        """
        device = next(self.model.parameters()).device
        output = self.model(input_ids=tokens.input_ids.to(device))
        return output.last_hidden_state
