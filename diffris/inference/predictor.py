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
from diffris.models.fast_path import (
    inference_memory_format,
    prepare_for_inference,
    warn_if_slower,
)
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
        model: the model; moved to ``device``, in eval mode and in the layout that runs
            fastest there (:func:`~diffris.models.fast_path.prepare_for_inference`).
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
    fixing the thread count (``--threads``) makes them identical whatever the number of
    workers.
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
        self.model = prepare_for_inference(model, device)
        self.device = device
        self.memory_format = inference_memory_format(device)
        # outputs stream back to the host on their own CUDA stream, under the next decode
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.precision = precision
        warn_if_slower(device, precision)
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

        On CUDA the host waits once per call, for the copy of the last probabilities: tiles go
        up from pinned memory without blocking, the row indices stay on the host (so that
        pairing a tile with a prompt needs no device read) and each decode's probabilities come
        back on a side stream while the next decode runs.

        Args:
            tiles: (B, 3, T, T) uint8 RGB.
            cached: the feature cache's entries for these tiles
                (:meth:`~diffris.inference.feature_cache.SceneFeatures.lookup`).

        Returns:
            (B, P, T, T) float32 probabilities in [0, 1].
        """
        batch, prompts = tiles.shape[0], self.prompt_count
        pairs = batch * prompts
        if cached is None:
            image = self._encode_in_chunks(self._pixels(tiles))
        else:  # only the tiles the cache lacks are preprocessed and encoded
            image = cached.features(lambda rows: self._encode_in_chunks(self._pixels(tiles[rows])))
        tile_index = torch.arange(batch).repeat_interleave(prompts)
        prompt_index = torch.arange(prompts).repeat(batch)
        pinned = self._copy_stream is not None
        out = torch.empty((pairs, *tiles.shape[2:]), dtype=torch.float32, pin_memory=pinned)
        for start in range(0, pairs, self.micro_batch):
            index = self._padded(torch.arange(start, min(start + self.micro_batch, pairs)))
            with autocast(self.device, self.precision):
                logits = self.model.decode(
                    select_rows(image, tile_index[index]),
                    self.text.index_select(prompt_index[index]),
                )
            count = min(self.micro_batch, pairs - start)
            self._copy_out(torch.sigmoid(logits.float())[:count, 0], out[start : start + count])
        if self._copy_stream is not None:
            self._copy_stream.synchronize()
        return out.view(batch, prompts, *tiles.shape[2:]).numpy()

    def _pixels(self, tiles: np.ndarray) -> torch.Tensor:
        """(B, 3, T, T) uint8 tiles as the model's input on the device."""
        return self.model.preprocess(self._upload(np.ascontiguousarray(tiles)))

    def _upload(self, tiles: np.ndarray) -> torch.Tensor:
        """(B, 3, T, T) uint8 on the device: 8-bit (a quarter of float32's bytes), from pinned
        memory without blocking the host on CUDA."""
        frames = torch.from_numpy(tiles)
        if self._copy_stream is None:
            return frames.to(self.device)
        return frames.pin_memory().to(self.device, non_blocking=True)

    def _copy_out(self, probabilities: torch.Tensor, into: torch.Tensor) -> None:
        """Copy one decode's probabilities into ``into`` (host), on the side stream on CUDA."""
        if self._copy_stream is None:
            into.copy_(probabilities)
            return
        self._copy_stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._copy_stream):
            into.copy_(probabilities, non_blocking=True)
        probabilities.record_stream(self._copy_stream)  # not reused before the copy is done

    def _padded(self, index: torch.Tensor) -> torch.Tensor:
        """``index`` repeated at its end to exactly ``micro_batch`` entries."""
        missing = self.micro_batch - len(index)
        return torch.cat([index, index[-1:].repeat(missing)]) if missing > 0 else index

    def _encode_in_chunks(self, pixels: torch.Tensor) -> ImageFeatures:
        """Image features of ``pixels``, in micro-batches (the last padded with its last tile)."""
        chunks = []
        for start in range(0, len(pixels), self.micro_batch):
            stop = min(start + self.micro_batch, len(pixels))
            index = self._padded(torch.arange(start, stop, device=pixels.device))
            with autocast(self.device, self.precision):
                chunk = pixels.index_select(0, index).contiguous(memory_format=self.memory_format)
                chunks.append(self.model.encode_image(chunk))
        return first_rows(cat_rows(chunks), len(pixels))
