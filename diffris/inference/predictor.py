"""The tile predictor: the model in inference mode, with the caching the data path relies on.

SAM's ``SamPredictor`` caches the image embedding so that many prompts cost one image encoding;
this does the same in both directions: each prompt's text features are computed once per run,
and each tile's image features (DiffRIS: the VAE latent; RSRefSeg: the SAM embedding and the
SigLIP map) once per tile, reused for every prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from diffris.data.prompts import Prompt
from diffris.devices import Precision, autocast
from diffris.models.interface import cat_rows, first_rows, select_rows

if TYPE_CHECKING:
    from diffris.inference.feature_cache import FeatureCacheOptions
    from diffris.inference.feature_cache.cache import BatchFeatures
    from diffris.models.interface import ImageFeatures, ReferringModel

log = logging.getLogger(__name__)


class TilePredictor(Protocol):
    """Anything that turns a batch of RGB tiles into per-prompt probabilities."""

    @property
    def prompt_count(self) -> int: ...

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """Args: tiles (B, 3, T, T) uint8. Returns (B, P, T, T) float32 in [0, 1]."""
        ...


class ModelPredictor:
    """A :class:`TilePredictor` backed by a referring model of any architecture.

    Args:
        model: the model; moved to ``device`` and put in eval mode.
        prompts: the prompts of this run; their text features are computed here, once.
        device: where to run.
        precision: autocast precision of the image encoding and the decode.
        micro_batch: tiles (image encoding) or (tile, prompt) pairs (decode) per model call;
            None picks 1 on a CPU (as fast as larger batches there) and 8 on a GPU. Every call
            has exactly this shape (the last chunk is padded), so the output does not depend
            on how many tiles a caller passes at once.
        feature_cache: keep each tile's image features in this cache and read them back in
            later runs (:mod:`diffris.inference.feature_cache`); None keeps nothing.

    Floating-point results depend on the shapes a kernel sees and, on a CPU, on the number of
    threads; fixing the micro-batch makes outputs bit-identical whatever ``--batch-size``, and
    fixing the thread count (the archive's ``--threads``) makes them identical whatever the
    number of workers.
    """

    def __init__(
        self,
        model: ReferringModel,
        prompts: Sequence[Prompt],
        *,
        device: torch.device,
        precision: Precision = Precision.FP32,
        micro_batch: int | None = None,
        feature_cache: FeatureCacheOptions | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.precision = precision
        self.micro_batch = max(1, micro_batch or (1 if device.type == "cpu" else 8))
        self.prompts = list(prompts)
        texts = [prompt.text for prompt in self.prompts]
        tokens = model.tokenize(texts)
        for prompt, truncated in zip(self.prompts, tokens.truncated, strict=True):
            if truncated:
                log.warning(
                    "prompt %r is longer than the text encoder's %d tokens; truncated",
                    prompt.id,
                    model.config.max_tokens,
                )
        with torch.inference_mode(), autocast(device, precision):
            self.text = model.encode_text(tokens)
        self.feature_cache = None
        if feature_cache is not None:
            from diffris.inference.feature_cache import FeatureCache

            self.feature_cache = FeatureCache(
                feature_cache, model, precision=precision.value, device=device
            )

    @property
    def prompt_count(self) -> int:
        return len(self.prompts)

    @torch.inference_mode()
    def predict(self, tiles: np.ndarray, cached: BatchFeatures | None = None) -> np.ndarray:
        """Per-prompt probabilities for a batch of tiles.

        Args:
            tiles: (B, 3, T, T) uint8 RGB.
            cached: the feature cache's entries for these tiles
                (:meth:`~diffris.inference.feature_cache.SceneFeatures.lookup`).

        Returns:
            (B, P, T, T) float32 probabilities in [0, 1].
        """
        batch, prompts = tiles.shape[0], self.prompt_count
        if cached is None:
            image = self._encode_in_chunks(self._pixels(tiles))
        else:  # only the tiles the cache lacks are preprocessed and encoded
            image = cached.features(lambda rows: self._encode_in_chunks(self._pixels(tiles[rows])))
        tile_index = torch.arange(batch, device=self.device).repeat_interleave(prompts)
        prompt_index = torch.arange(prompts, device=self.device).repeat(batch)
        out = torch.empty((batch * prompts, *tiles.shape[2:]), dtype=torch.float32)
        for start in range(0, batch * prompts, self.micro_batch):
            index = self._padded(
                torch.arange(start, min(start + self.micro_batch, batch * prompts))
            )
            with autocast(self.device, self.precision):
                logits = self.model.decode(
                    select_rows(image, tile_index[index]),
                    self.text.index_select(prompt_index[index]),
                )
            count = min(self.micro_batch, batch * prompts - start)
            out[start : start + count] = torch.sigmoid(logits.float())[:count, 0].cpu()
        return out.view(batch, prompts, *tiles.shape[2:]).numpy()

    def _pixels(self, tiles: np.ndarray) -> torch.Tensor:
        """(B, 3, T, T) uint8 tiles as the model's input on the device."""
        return self.model.preprocess(torch.from_numpy(np.ascontiguousarray(tiles))).to(self.device)

    def _padded(self, index: torch.Tensor) -> torch.Tensor:
        """``index`` repeated at its end to exactly ``micro_batch`` entries."""
        missing = self.micro_batch - len(index)
        return torch.cat([index, index[-1:].repeat(missing)]) if missing > 0 else index

    def _encode_in_chunks(self, pixels: torch.Tensor) -> ImageFeatures:
        """Image features of ``pixels``, in micro-batches (the last padded with its last tile)."""
        chunks = []
        for start in range(0, len(pixels), self.micro_batch):
            index = self._padded(torch.arange(start, min(start + self.micro_batch, len(pixels))))
            with autocast(self.device, self.precision):
                chunks.append(self.model.encode_image(pixels[index.to(pixels.device)]))
        return first_rows(cat_rows(chunks), len(pixels))
