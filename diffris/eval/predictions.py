"""Score a folder of predicted masks (another method's outputs) with the protocol of
:mod:`diffris.eval.metrics`, so that every method is compared on the same footing.

File naming. The folder holds one mask per sample of the split, named after the sample id
(:attr:`~diffris.data.base.SampleMeta.sample_id`) in one of two ways, with the suffix ``.png``,
``.tif`` or ``.tiff`` (any case):

- **nested**: the id as a relative path, ``<sample_id>.png``. RefSegRS and RISBench ids are
  ``<split>/<key>``, so these files sit in a ``<split>/`` sub-folder: ``test/123.png``,
  ``test/train_5_2.png``. RRSIS-D ids (``<ref_id>_<sent_id>``) have no ``/``: ``17_17.png``.
- **flat**: the id without its ``<split>/`` prefix, ``<key>.png``: ``123.png`` (RefSegRS),
  ``train_5_2.png`` (RISBench, the dataset's own mask name), ``17_17.png`` (RRSIS-D).

A key repeated on later lines of a phrase file has ids ending ``#2``, ``#3`` ... and so do its
files (``123#2.png``). A sample with two matching files (``test/123.png`` and ``123.png``, or
``123.png`` and ``123.tif``) is an error rather than a silent pick. :func:`prediction_file`
gives the flat name to write.

Pixel values. Object pixels are: True in a 1-bit image; for integer images whose maximum is 1,
the pixels equal to 1 (0/1 masks); for other integer images, values > 127 (0/255 masks, or 8-bit
probabilities cut at 0.5); for floating-point TIFFs, values > 0.5 (probabilities). Colour images
count a pixel when any colour channel does (alpha is ignored).

Size. A prediction is either at the network input size S x S or at the image's original
H x W; with :attr:`Resolution.INPUT <diffris.eval.metrics.Resolution.INPUT>` an H x W prediction
is resized to S x S with the same nearest-neighbour resize as the ground truth, with
:attr:`Resolution.ORIGINAL <diffris.eval.metrics.Resolution.ORIGINAL>` an S x S prediction is
upsampled to H x W with nearest neighbour (a binary mask has no logits to interpolate; for the
exact bilinear-logit convention, write predictions at the original size). Any other size is an
error naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from diffris.data.base import ReferringDataset
from diffris.data.io import read_channels
from diffris.errors import DatasetFormatError, InputError, InputNotFoundError
from diffris.eval.metrics import MetricAccumulator, Resolution, iou_counts, resize_mask_nearest

logger = logging.getLogger(__name__)

#: Accepted suffixes of prediction files (compared case-insensitively).
PREDICTION_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")
#: Integer pixels above this value are the object, unless the image's maximum is 1.
INTEGER_THRESHOLD = 127
#: Floating-point pixels above this value are the object.
FLOAT_THRESHOLD = 0.5

#: ``on_scored(index, intersection, union)`` for each sample, in dataset order.
CountHook = Callable[[int, int, int], None]
#: ``progress(samples_done, samples_total)``
ProgressFn = Callable[[int, int], None]


class PredictionsIncompleteError(InputNotFoundError):
    """The predictions folder lacks the file of one or more samples."""


def prediction_stems(sample_id: str, split: str) -> tuple[str, ...]:
    """The accepted relative paths of a sample's prediction, without suffix.

    Args:
        sample_id: e.g. ``test/123`` or ``17_17``.
        split: the split of the sample, e.g. ``test``.

    Returns:
        ``(nested, flat)``, e.g. ``("test/123", "123")``; one entry when they coincide.
    """
    prefix = f"{split}/"
    flat = sample_id[len(prefix) :] if sample_id.startswith(prefix) else sample_id
    return (sample_id,) if flat == sample_id else (sample_id, flat)


def prediction_file(sample_id: str, split: str, suffix: str = ".png") -> str:
    """The flat file name to write a sample's prediction under, e.g. ``123.png``."""
    return prediction_stems(sample_id, split)[-1] + suffix


class _Listing:
    """Folder listings, each read once: ``stem -> file names`` with an accepted suffix."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folders: dict[str, dict[str, list[str]]] = {}

    def matches(self, stem: str) -> list[str]:
        folder, _, name = stem.rpartition("/")
        if folder not in self._folders:
            by_stem: dict[str, list[str]] = {}
            try:
                entries = sorted(os.listdir(self.root / folder))
            except (FileNotFoundError, NotADirectoryError):
                entries = []
            for entry in entries:
                base, dot, suffix = entry.rpartition(".")
                if dot and f".{suffix.lower()}" in PREDICTION_SUFFIXES:
                    by_stem.setdefault(base, []).append(entry)
            self._folders[folder] = by_stem
        return [f"{folder}/{f}" if folder else f for f in self._folders[folder].get(name, [])]


def find_predictions(
    folder: str | os.PathLike[str], dataset: ReferringDataset, indices: Sequence[int]
) -> dict[int, Path]:
    """The prediction file of every sample in ``indices`` (see the module's naming rules).

    Raises:
        InputNotFoundError: ``folder`` is not a directory.
        PredictionsIncompleteError: some samples have no file; names the first and the count.
        InputError: a sample has two matching files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputNotFoundError(f"predictions folder {root} does not exist or is not a folder")
    listing = _Listing(root)
    found: dict[int, Path] = {}
    missing: list[tuple[str, tuple[str, ...]]] = []
    split = dataset.split.value
    for index in indices:
        sample_id = dataset.meta(index).sample_id
        stems = prediction_stems(sample_id, split)
        files = [match for stem in stems for match in listing.matches(stem)]
        if not files:
            missing.append((sample_id, stems))
        elif len(files) > 1:
            raise InputError(
                f"sample {sample_id} has {len(files)} prediction files in {root} "
                f"({', '.join(files)}); keep one"
            )
        else:
            found[index] = root / files[0]
    if missing:
        sample_id, stems = missing[0]
        expected = " or ".join(str(root / f"{stem}.png") for stem in stems)
        raise PredictionsIncompleteError(
            f"{len(missing)} of {len(indices)} samples have no prediction in {root}; the first is "
            f"{sample_id}: expected {expected} (or .tif/.tiff)"
        )
    return found


def read_prediction(path: Path) -> np.ndarray:
    """Read a predicted mask and binarise it (rules in the module docstring).

    Returns:
        (H, W) bool.

    Raises:
        InputError: the file is not a readable image.
    """
    try:
        array = read_channels(path)
    except DatasetFormatError as err:
        raise InputError(f"prediction {err}") from err
    if array.dtype == bool:
        return array[:, :, 0].copy()
    channels = array.shape[2]
    colour = array[:, :, : 1 if channels == 2 else min(channels, 3)]  # drop alpha
    if np.issubdtype(colour.dtype, np.floating):
        return np.asarray((colour > FLOAT_THRESHOLD).any(axis=2))
    if not np.issubdtype(colour.dtype, np.integer):
        raise InputError(f"prediction {path} has {colour.dtype} pixels; write 0/1 or 0/255 masks")
    if colour.size and int(colour.max()) <= 1:
        return np.asarray((colour == 1).any(axis=2))
    return np.asarray((colour > INTEGER_THRESHOLD).any(axis=2))


def fit_prediction(
    prediction: np.ndarray,
    original: tuple[int, int],
    size: int,
    resolution: Resolution,
    *,
    where: Path | str = "prediction",
) -> np.ndarray:
    """A prediction at the comparison resolution (rules in the module docstring).

    Args:
        prediction: (h, w) bool, at S x S or at the original size.
        original: the image's (H, W) in pixels (a tuple).
        size: the network input side S in pixels.
        resolution: where it is compared.
        where: the file, for the error message.

    Returns:
        (S, S) bool for INPUT, (H, W) bool for ORIGINAL.

    Raises:
        InputError: the prediction is neither S x S nor H x W.
    """
    shape = (prediction.shape[0], prediction.shape[1])
    if shape not in ((size, size), original):
        raise InputError(
            f"{where} is {shape[0]}x{shape[1]} px; expected the input size {size}x{size} "
            f"(--image-size) or the image's size {original[0]}x{original[1]}"
        )
    target = (size, size) if resolution is Resolution.INPUT else (original[0], original[1])
    return prediction if shape == target else resize_mask_nearest(prediction, target)


def truth_at(mask: np.ndarray, size: int, resolution: Resolution) -> np.ndarray:
    """The ground truth at the comparison resolution: nearest-resized to S x S for INPUT."""
    return resize_mask_nearest(mask, size) if resolution is Resolution.INPUT else mask


class _Counts(torch.utils.data.Dataset[tuple[int, int, int]]):
    """(index, I, U) per sample: reads the ground truth and the prediction (in loader workers)."""

    def __init__(
        self,
        dataset: ReferringDataset,
        files: dict[int, Path],
        indices: Sequence[int],
        size: int,
        resolution: Resolution,
    ) -> None:
        self.dataset, self.files, self.indices = dataset, files, list(indices)
        self.size, self.resolution = size, resolution

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, int, int]:
        index = self.indices[position]
        truth = self.dataset.sample(index).mask
        path = self.files[index]
        prediction = fit_prediction(
            read_prediction(path),
            (truth.shape[0], truth.shape[1]),
            self.size,
            self.resolution,
            where=path,
        )
        inter, union = iou_counts(prediction, truth_at(truth, self.size, self.resolution))
        return index, inter, union


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def score_predictions(
    dataset: ReferringDataset,
    files: dict[int, Path],
    indices: Sequence[int],
    *,
    size: int = 512,
    resolution: Resolution = Resolution.INPUT,
    workers: int = 0,
    progress: ProgressFn | None = None,
    on_scored: CountHook | None = None,
) -> MetricAccumulator:
    """Accumulate the counts of predicted masks against the dataset's ground truth.

    Args:
        dataset: the split, without transforms (ground truth is read at the original size).
        files: sample index -> prediction file, from :func:`find_predictions`.
        indices: the samples to score, in order.
        size: the network input side S in pixels (the INPUT comparison size).
        resolution: see :class:`~diffris.eval.metrics.Resolution`.
        workers: loader processes reading files in parallel (0: in this process).

    Returns:
        The accumulator; ``.result()`` gives the scores.
    """
    loader = torch.utils.data.DataLoader(
        _Counts(dataset, files, indices, size, resolution),
        batch_size=16,
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_list,
    )
    accumulator = MetricAccumulator()
    done = 0
    for batch in loader:
        for index, inter, union in batch:
            meta = dataset.meta(index)
            accumulator.add(meta.sample_id, inter, union, category=meta.category)
            if on_scored is not None:
                on_scored(index, inter, union)
        done += len(batch)
        if progress is not None:
            progress(done, len(indices))
    logger.info("scored %d predicted masks", done)
    return accumulator
