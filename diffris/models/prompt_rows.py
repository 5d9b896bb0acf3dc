"""Prompt batches as frozen dataclasses of per-prompt rows, selected and moved as a whole.

Both architectures pass prompts between their stages as a few tensors whose first dimension is
the prompt, plus a per-prompt list (which prompts were truncated). :class:`PromptRows` gives
such a dataclass the row operations the tile predictor pairs tiles and prompts with, once.
"""

from __future__ import annotations

import dataclasses
from typing import Self

import torch
from torch import Tensor

from diffris.models.interface import index_on


@dataclasses.dataclass(frozen=True)
class PromptRows:
    """Base of a frozen dataclass whose tensor fields hold one row per prompt and whose list
    fields one item per prompt (e.g. ``truncated``)."""

    def _tensor_fields(self) -> list[str]:
        return [
            f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), Tensor)
        ]

    def __len__(self) -> int:
        return int(getattr(self, self._tensor_fields()[0]).shape[0])

    def index_select(self, index: Tensor) -> Self:
        """Rows ``index`` (1-D int64), e.g. to pair B tiles × P prompts in one batch."""
        picked = index.tolist()
        changes: dict[str, object] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Tensor):
                changes[field.name] = value.index_select(0, index_on(value.device, index))
            elif isinstance(value, list):
                changes[field.name] = [value[i] for i in picked]
        return dataclasses.replace(self, **changes)

    def repeat_interleave(self, repeats: int) -> Self:
        """Each prompt ``repeats`` times in a row: [a, b] -> [a, a, b, b] for 2."""
        return self.index_select(torch.arange(len(self)).repeat_interleave(repeats))

    def repeat(self, times: int) -> Self:
        """The whole batch ``times`` times: [a, b] -> [a, b, a, b] for 2."""
        return self.index_select(torch.arange(len(self)).repeat(times))

    def to(self, device: torch.device | str) -> Self:
        """A copy on ``device``."""
        changes = {name: getattr(self, name).to(device) for name in self._tensor_fields()}
        return dataclasses.replace(self, **changes)
