"""Pick the best and worst samples of an evaluation for the report, in bounded memory.

While the loop runs only the K best and K worst samples are held (a heap each, with whatever
the caller needs to redraw them, e.g. the predicted mask); images are read again for those 2K
samples at the end. The choice is deterministic: by IoU, ties broken by dataset index (lower
first), whatever the batch size or the order samples arrive in.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from PIL import Image

from diffris.data.base import ReferringDataset
from diffris.errors import InputError
from diffris.eval.metrics import Resolution, resize_mask_nearest
from diffris.eval.report import GallerySample

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pick(Generic[T]):
    """A chosen sample: its dataset index, IoU in [0, 1] and the caller's payload."""

    index: int
    iou: float
    payload: T


class GallerySelector(Generic[T]):
    """Keep the ``k`` best and ``k`` worst samples offered.

    Args:
        k: samples per side; 0 keeps nothing.
    """

    def __init__(self, k: int) -> None:
        if k < 0:
            raise InputError(f"gallery size {k} must be 0 or more, e.g. 8")
        self.k = k
        # Min-heaps whose root is the sample to drop first.
        # best: rank by (-iou, index), so drop the largest of it = smallest (iou, -index).
        # worst: rank by (iou, index), so drop the largest of it = smallest (-iou, -index).
        self._best: list[tuple[float, int, T]] = []
        self._worst: list[tuple[float, int, T]] = []

    def offer(self, index: int, iou: float, payload: Callable[[], T]) -> None:
        """Consider a sample; ``payload()`` is called only if it is kept (at most twice)."""
        if self.k == 0:
            return
        for heap, key in ((self._best, (iou, -index)), (self._worst, (-iou, -index))):
            if len(heap) < self.k:
                heapq.heappush(heap, (*key, payload()))
            elif key > heap[0][:2]:
                heapq.heapreplace(heap, (*key, payload()))

    def best(self) -> list[Pick[T]]:
        """The kept best samples with an IoU above 0, highest IoU first.

        A sample that missed its target entirely is never "best", even when no sample did
        better; it is a worst one.
        """
        ordered = sorted(self._best, key=lambda item: (-item[0], -item[1]))
        return [Pick(-index, iou, payload) for iou, index, payload in ordered if iou > 0]

    def worst(self) -> list[Pick[T]]:
        """The kept worst samples not among :meth:`best`, lowest IoU first."""
        shown = {-index for iou, index, _ in self._best if iou > 0}
        ordered = sorted(self._worst, key=lambda item: (-item[0], -item[1]))
        return [
            Pick(-index, -iou, payload) for iou, index, payload in ordered if -index not in shown
        ]


def gallery_samples(
    dataset: ReferringDataset,
    picks: Sequence[Pick[T]],
    *,
    size: int,
    resolution: Resolution,
    prediction_of: Callable[[Pick[T], tuple[int, int]], np.ndarray],
) -> list[GallerySample]:
    """Read the picked samples again and pair them with their predictions for the report.

    Everything is shown at the resolution it was scored at: the image resized to S x S
    (bilinear, as the model saw it) with the nearest-resized ground truth for INPUT, the
    original image and mask for ORIGINAL.

    Args:
        dataset: the evaluated split.
        picks: from :meth:`GallerySelector.best` or :meth:`GallerySelector.worst`.
        size: the network input side S in pixels.
        resolution: the comparison resolution of the evaluation.
        prediction_of: ``(pick, (H, W) original size)`` -> (h, w) bool prediction at the
            comparison resolution.
    """
    samples = []
    for pick in picks:
        sample = dataset.sample(pick.index)
        image, truth = sample.image, sample.mask
        if resolution is Resolution.INPUT:
            picture = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
            image, truth = np.asarray(picture), resize_mask_nearest(truth, size)
        prediction = prediction_of(pick, (sample.mask.shape[0], sample.mask.shape[1]))
        samples.append(
            GallerySample(
                sample_id=sample.meta.sample_id,
                sentence=sample.sentence,
                iou=pick.iou,
                image=image,
                truth=truth.astype(bool),
                prediction=prediction.astype(bool),
                category=sample.meta.category,
            )
        )
    return samples
