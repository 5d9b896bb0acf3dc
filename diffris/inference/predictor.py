"""The tile predictor: the model in inference mode, with the caching the data path relies on.

SAM's ``SamPredictor`` caches the image embedding so that many prompts cost one image encoding;
this does the same in both directions: each prompt's text features (text encoder + CP-adapter)
are computed once per run, and each tile's VAE latent once per tile, reused for every prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from diffris.data.prompts import Prompt
from diffris.devices import Precision, autocast

if TYPE_CHECKING:
    from diffris.models.diffris import DiffRIS

log = logging.getLogger(__name__)


class TilePredictor(Protocol):
    """Anything that turns a batch of RGB tiles into per-prompt probabilities."""

    @property
    def prompt_count(self) -> int: ...

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """Args: tiles (B, 3, T, T) uint8. Returns (B, P, T, T) float32 in [0, 1]."""
        ...


class ModelPredictor:
    """A :class:`TilePredictor` backed by a DiffRIS model.

    Args:
        model: the model; moved to ``device`` and put in eval mode.
        prompts: the prompts of this run; their text features are computed here, once.
        device: where to run.
        precision: autocast precision for the VAE, UNet and decoder.
        pair_batch: how many (tile, prompt) pairs go through the UNet and decoder at once.
    """

    def __init__(
        self,
        model: DiffRIS,
        prompts: Sequence[Prompt],
        *,
        device: torch.device,
        precision: Precision = Precision.FP32,
        pair_batch: int = 4,
    ) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.precision = precision
        self.pair_batch = max(1, pair_batch)
        self.prompts = list(prompts)
        texts = [prompt.text for prompt in self.prompts]
        tokens = model.tokenize(texts)
        for prompt, truncated in zip(self.prompts, tokens.truncated, strict=True):
            if truncated:
                log.warning(
                    "prompt %r is longer than the text encoder's 77 tokens; truncated", prompt.id
                )
        with torch.inference_mode(), autocast(device, precision):
            self.text = model.encode_text(tokens)

    @property
    def prompt_count(self) -> int:
        return len(self.prompts)

    @torch.inference_mode()
    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """Per-prompt probabilities for a batch of tiles.

        Args:
            tiles: (B, 3, T, T) uint8 RGB.

        Returns:
            (B, P, T, T) float32 probabilities in [0, 1].
        """
        batch, prompts = tiles.shape[0], self.prompt_count
        pixels = self.model.preprocess(torch.from_numpy(np.ascontiguousarray(tiles))).to(
            self.device
        )
        with autocast(self.device, self.precision):
            latents = self.model.encode_image(pixels)
        tile_index = torch.arange(batch, device=self.device).repeat_interleave(prompts)
        prompt_index = torch.arange(prompts, device=self.device).repeat(batch)
        out = torch.empty((batch * prompts, *tiles.shape[2:]), dtype=torch.float32)
        for start in range(0, batch * prompts, self.pair_batch):
            pairs = slice(start, start + self.pair_batch)
            with autocast(self.device, self.precision):
                logits = self.model.decode(
                    latents.index_select(0, tile_index[pairs]),
                    self.text.index_select(prompt_index[pairs]),
                )
            out[pairs] = torch.sigmoid(logits.float())[:, 0].cpu()
        return out.view(batch, prompts, *tiles.shape[2:]).numpy()
