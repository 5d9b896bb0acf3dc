"""Score a model on a referring-segmentation dataset with the protocol of
:mod:`diffris.eval.metrics` (every sentence is one sample; nothing is dropped).

Used by ``diffris evaluate`` and by training's per-epoch validation; under torch.distributed
each rank scores its shard and the accumulators are merged on rank 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Sampler

from diffris.data.base import ReferringDataset
from diffris.data.transforms import collate
from diffris.devices import Precision, autocast
from diffris.eval.metrics import MetricAccumulator, Resolution, score_logits

if TYPE_CHECKING:
    from diffris.models.diffris import DiffRIS

#: ``progress(samples_done, samples_total)``
ProgressFn = Callable[[int, int], None]
#: ``on_batch(indices, logits)``: sees every scored batch (the report keeps its gallery this way).
BatchHook = Callable[[list[int], torch.Tensor], None]


def evaluation_loader(
    dataset: ReferringDataset,
    *,
    batch_size: int,
    workers: int = 0,
    sampler: Sampler[int] | Iterable[int] | None = None,
) -> DataLoader:
    """A loader over ``dataset`` (which must carry a :class:`ResizeToModel` transform)."""
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        sampler=sampler,  # type: ignore[arg-type]
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=False,
    )


@torch.inference_mode()
def score_model(
    model: DiffRIS,
    loader: DataLoader,
    *,
    resolution: Resolution = Resolution.INPUT,
    device: torch.device | None = None,
    precision: Precision = Precision.FP32,
    progress: ProgressFn | None = None,
    on_batch: BatchHook | None = None,
) -> MetricAccumulator:
    """Run ``model`` over ``loader`` and accumulate per-sentence intersections and unions.

    Args:
        model: put in eval mode for the call and restored afterwards.
        loader: batches from :func:`evaluation_loader`; in ``ORIGINAL`` resolution mode the
            dataset's transform must keep the original masks (``keep_original_mask=True``).
        resolution: compare at the network input size (default) or the original size.

    Returns:
        The accumulator; ``.result()`` gives the scores.
    """
    device = device or next(model.parameters()).device
    dataset = loader.dataset
    total = len(loader.sampler) if loader.sampler is not None else len(dataset)  # type: ignore[arg-type]
    was_training = model.training
    model.eval()
    accumulator = MetricAccumulator()
    done = 0
    try:
        for batch in loader:
            pixels = batch["pixels"].to(device)
            with autocast(device, precision):
                logits = model(pixels, list(batch["sentence"]))
            logits = logits.float()
            if resolution is Resolution.ORIGINAL:
                truths = batch["original_mask"]
            else:
                truths = [mask[0] > 0.5 for mask in batch["mask"]]
            indices = [int(i) for i in batch["index"]]
            for index, (inter, union) in zip(
                indices, score_logits(logits, truths, resolution), strict=True
            ):
                meta = dataset.meta(index)  # type: ignore[attr-defined]
                accumulator.add(meta.sample_id, inter, union, category=meta.category)
            if on_batch is not None:
                on_batch(indices, logits)
            done += len(indices)
            if progress is not None:
                progress(done, total)
    finally:
        model.train(was_training)
    return accumulator
