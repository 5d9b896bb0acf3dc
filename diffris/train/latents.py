"""The VAE latent cache: each training image is encoded once, not once per epoch.

A latent depends only on the image (no augmentation, a frozen VAE, the posterior mean), and the
VAE encoder at 512² costs more than the UNet pass, so caching removes the largest part of every
epoch after the first. Images shared by several sentences (RRSIS-D, the synthetic sets) are
encoded once.

The work is sharded: process ``r`` of ``W`` encodes every ``W``-th distinct image, then the shards
are all-gathered so every process holds all latents in RAM (float32, 64 KiB per 512² image:
1.7 GB for RISBench's 26,300 training samples). Rank 0 also writes them to the run folder
(safetensors, keyed by backbone, size, precision and the sample list) so a resumed run does not
encode again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from diffris.data.base import ReferringDataset
from diffris.devices import Precision, autocast
from diffris.errors import InputError
from diffris.eval.evaluate import evaluation_loader
from diffris.tensor_files import save_tensors
from diffris.train.distributed import DistContext, all_sum, barrier

if TYPE_CHECKING:
    from diffris.models.interface import ReferringModel

logger = logging.getLogger(__name__)

#: Rows per all-gather round (bounds the communication buffer: 1,024 × 64 KiB = 64 MiB at 512²).
GATHER_ROWS = 1024


def refuse_uncacheable(preset: str, *, frozen: bool) -> None:
    """Refuse a latent cache for a model whose image features train (RSRefSeg's LoRA encoders).

    Args:
        preset: the model's preset, named in the message.
        frozen: the model's ``image_features_frozen``.

    Raises:
        InputError: ``frozen`` is False; one line naming the preset and the fix.
    """
    if not frozen:
        raise InputError(
            f"--cache-latents: the {preset} model's image features change while it trains "
            "(LoRA in its encoders), so they cannot be computed once; drop --cache-latents"
        )


def check_cache_latents(preset: str, cache_latents: bool) -> None:
    """:func:`refuse_uncacheable` for a run's options, before any model is built.

    Raises:
        InputError: ``cache_latents`` for a preset whose image features train.
    """
    if cache_latents:
        from diffris.models.registry import image_features_frozen

        refuse_uncacheable(preset, frozen=image_features_frozen(preset))


class LatentCache:
    """Latents of a dataset's samples, looked up by sample index.

    Args:
        latents: (U, 4, h, w) float32, one row per distinct image.
        rows: (N,) int64, the row of each sample index.
    """

    def __init__(self, latents: Tensor, rows: Tensor) -> None:
        self.latents = latents
        self.rows = rows

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def get(self, indices: Tensor) -> Tensor:
        """(B, 4, h, w) latents of sample ``indices`` ((B,) int64), on the CPU."""
        return self.latents.index_select(0, self.rows.index_select(0, indices.cpu()))


def distinct_images(dataset: ReferringDataset) -> tuple[list[int], Tensor]:
    """One representative sample per distinct image file, and each sample's image number.

    Returns:
        The first sample index of each distinct image (in order of appearance), and (N,) int64
        mapping sample index -> position in that list.
    """
    first: dict[str, int] = {}
    representatives: list[int] = []
    rows = []
    for index in range(len(dataset)):
        image = dataset.meta(index).image_file
        if image not in first:
            first[image] = len(representatives)
            representatives.append(index)
        rows.append(first[image])
    return representatives, torch.tensor(rows, dtype=torch.int64)


def cache_key(
    model: ReferringModel, dataset: ReferringDataset, size: int, precision: Precision
) -> str:
    """What the cached latents depend on: the model's config (backbone fingerprint, latent
    scale), input size, precision, samples."""
    digest = hashlib.sha256()
    identity = {
        "model": model.config.to_dict(),
        "size": size,
        "precision": precision.value,
        "dataset": type(dataset).__name__,
        "split": str(dataset.split),
    }
    digest.update(json.dumps(identity, sort_keys=True).encode())
    for index in range(len(dataset)):
        digest.update(dataset.meta(index).image_file.encode() + b"\n")
    return digest.hexdigest()[:24]


def _encode_shard(
    model: ReferringModel,
    dataset: ReferringDataset,
    indices: list[int],
    *,
    batch_size: int,
    precision: Precision,
    workers: int,
) -> Tensor:
    """(len(indices), 4, h, w) float32 CPU latents of the images of sample ``indices``."""
    loader = evaluation_loader(dataset, batch_size=batch_size, workers=workers, sampler=indices)
    device = model.device
    parts = []
    with torch.inference_mode():
        for batch in loader:
            with autocast(device, precision):
                latents = model.encode_image(batch["pixels"].to(device))
            parts.append(latents.float().cpu())
    if not parts:
        return torch.empty(0)
    return torch.cat(parts)


def _all_gather_rows(shard: Tensor, count: int, ctx: DistContext) -> Tensor:
    """Interleave every rank's rows: row ``i`` of the result is rank ``i % W``'s row ``i // W``."""
    import torch.distributed as dist

    world = ctx.world_size
    shape = tuple(shard.shape[1:])
    longest = (count + world - 1) // world
    padded = torch.zeros((longest, *shape), dtype=torch.float32)
    padded[: shard.shape[0]] = shard
    gathered = [torch.empty((longest, *shape)) for _ in range(world)]
    for start in range(0, longest, GATHER_ROWS):
        stop = min(start + GATHER_ROWS, longest)
        piece = padded[start:stop].to(ctx.device)
        pieces = [torch.empty_like(piece) for _ in range(world)]
        dist.all_gather(pieces, piece)
        for rank in range(world):
            gathered[rank][start:stop] = pieces[rank].cpu()
    result = torch.empty((count, *shape))
    for rank in range(world):
        result[rank::world] = gathered[rank][: len(range(rank, count, world))]
    return result


def build_latent_cache(
    model: ReferringModel,
    dataset: ReferringDataset,
    ctx: DistContext,
    *,
    size: int,
    precision: Precision,
    batch_size: int,
    workers: int = 0,
    file: Path | None = None,
) -> LatentCache:
    """Encode every distinct training image once (sharded over ranks) and share the latents.

    Args:
        model: its VAE encodes; nothing in it changes.
        dataset: the training split with a ``ResizeToModel(size)`` transform.
        ctx: this process.
        size: the input size (part of the cache key).
        precision: autocast of the encoder, as in training without the cache.
        batch_size: images per encoder pass.
        workers: data-loader workers.
        file: where rank 0 saves the cache and every rank looks for it first; None = RAM only.

    Returns:
        The cache, identical on every rank.

    Raises:
        InputError: ``model``'s image features train (nothing to cache).
    """
    refuse_uncacheable(model.config.backbone.preset, frozen=model.image_features_frozen)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    representatives, rows = distinct_images(dataset)
    key = cache_key(model, dataset, size, precision)
    stored: Tensor | None = None
    if file is not None and file.is_file():
        try:
            content = load_file(file)
            if content["key"].numpy().tobytes().decode() == key:
                stored = content["latents"]
        except (SafetensorError, OSError, KeyError, UnicodeDecodeError):
            stored = None
    usable = stored is not None and stored.shape[0] == len(representatives)
    # every rank must take the same path below (collectives), so they vote
    votes = all_sum(torch.tensor([int(usable)], device=ctx.device), ctx)
    if int(votes.item()) == ctx.world_size and stored is not None:
        logger.info("reusing %d cached latents from %s", stored.shape[0], file)
        return LatentCache(stored, rows)
    started = time.perf_counter()
    mine = representatives[ctx.rank :: ctx.world_size]
    shard = _encode_shard(
        model, dataset, mine, batch_size=batch_size, precision=precision, workers=workers
    )
    latents = _all_gather_rows(shard, len(representatives), ctx) if ctx.distributed else shard
    logger.info(
        "encoded %d distinct training images to latents in %.1f s (%d per process)",
        len(representatives),
        time.perf_counter() - started,
        len(mine),
    )
    if file is not None and ctx.is_main:
        staging = file.parent / f".{file.name}.tmp"
        key_bytes = torch.frombuffer(bytearray(key.encode()), dtype=torch.uint8)
        save_tensors({"latents": latents.contiguous(), "key": key_bytes}, staging)
        staging.replace(file)
    barrier(ctx)
    return LatentCache(latents, rows)
