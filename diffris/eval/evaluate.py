"""Score a model, or a folder of predicted masks, on a referring-segmentation dataset with the
protocol of :mod:`diffris.eval.metrics` (every sentence is one sample; nothing is dropped).

:func:`score_model` is the loop shared by ``diffris evaluate`` and training's per-epoch
validation; under torch.distributed each rank scores its shard and the accumulators are merged on
rank 0. :func:`evaluate` is ``diffris evaluate``: it opens the dataset, loads the model (or finds
the prediction files), scores the split and picks the report's gallery.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from diffris import __version__
from diffris.config import Config
from diffris.data.base import ReferringDataset, open_dataset
from diffris.data.synthetic.detect import SYNTHETIC
from diffris.data.transforms import ResizeToModel, collate
from diffris.devices import Precision, autocast, resolve_device
from diffris.errors import InputError, OutputExistsError, OutputNotWritableError
from diffris.eval.gallery import GallerySelector, Pick, gallery_samples
from diffris.eval.metrics import (
    MetricAccumulator,
    Resolution,
    Scores,
    iou,
    logits_to_mask,
    score_logits,
)
from diffris.eval.predictions import (
    find_predictions,
    fit_prediction,
    read_prediction,
    score_predictions,
)
from diffris.eval.report import GallerySample, write_report
from diffris.models.names import Pretrained

if TYPE_CHECKING:
    from diffris.models.interface import ReferringModel

logger = logging.getLogger(__name__)

#: ``progress(samples_done, samples_total)``
ProgressFn = Callable[[int, int], None]
#: ``on_batch(indices, logits)``: sees every scored batch.
BatchHook = Callable[[list[int], torch.Tensor], None]
#: ``on_scored(indices, logits, counts)``: every scored batch with its per-sample (I, U) counts
#: (the report's gallery is chosen this way).
ScoredHook = Callable[[list[int], torch.Tensor, list[tuple[int, int]]], None]
#: ``prediction_of(pick, (H, W))``: a gallery sample's (h, w) bool prediction as it was scored.
PredictionFn = Callable[[Pick[Any], tuple[int, int]], np.ndarray]


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
    model: ReferringModel,
    loader: DataLoader,
    *,
    resolution: Resolution = Resolution.INPUT,
    device: torch.device | None = None,
    precision: Precision = Precision.FP32,
    progress: ProgressFn | None = None,
    on_batch: BatchHook | None = None,
    on_scored: ScoredHook | None = None,
) -> MetricAccumulator:
    """Run ``model`` over ``loader`` and accumulate per-sentence intersections and unions.

    Args:
        model: put in eval mode for the call and restored afterwards.
        loader: batches from :func:`evaluation_loader`; in ``ORIGINAL`` resolution mode the
            dataset's transform must keep the original masks (``keep_original_mask=True``).
        resolution: compare at the network input size (default) or the original size.
        progress: called after each batch with (samples done, samples to score).
        on_batch: called with each batch's dataset indices and (B, 1, S, S) float32 logits.
        on_scored: like ``on_batch``, with the batch's (I, U) pixel counts as well.

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
            counts = score_logits(logits, truths, resolution)
            for index, (inter, union) in zip(indices, counts, strict=True):
                meta = dataset.meta(index)  # type: ignore[attr-defined]
                accumulator.add(meta.sample_id, inter, union, category=meta.category)
            if on_batch is not None:
                on_batch(indices, logits)
            if on_scored is not None:
                on_scored(indices, logits, counts)
            done += len(indices)
            if progress is not None:
                progress(done, total)
    finally:
        model.train(was_training)
    return accumulator


@dataclass(frozen=True)
class EvaluateOptions(Config):
    """How ``diffris evaluate`` scores a split.

    Attributes:
        image_size: the network input side S in pixels (a multiple of 64 for a model); INPUT
            resolution compares at S x S.
        resolution: compare at S x S (the standard protocol) or at the original size.
        batch_size: samples per model batch.
        workers: DataLoader processes reading samples (0: in this process).
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``.
        precision: autocast precision of the model.
        limit: score only the first ``limit`` samples of the split (its file order), or all.
        gallery: best and worst samples kept for the report, each (0: none).
    """

    image_size: int = 512
    resolution: Resolution = Resolution.INPUT
    batch_size: int = 8
    workers: int = 0
    device: str = "auto"
    precision: Precision = Precision.FP32
    limit: int | None = None
    gallery: int = 8

    def check(self) -> None:
        """Raise :class:`InputError` naming the first bad value."""
        for name, value, least in (
            ("--image-size", self.image_size, 1),
            ("--batch-size", self.batch_size, 1),
            ("--workers", self.workers, 0),
            ("--gallery", self.gallery, 0),
        ):
            if value < least:
                raise InputError(f"{name} {value} must be at least {least}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit {self.limit} must be at least 1; omit it to score all")


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes:
        scores: the figures (x100), per category, and each sample's counts.
        settings: what was evaluated, JSON-able: dataset, split, root, model or predictions,
            resolution, image_size, samples (scored), split_samples, limit, device, precision,
            diffris version.
        best: the highest-IoU samples, best first (empty unless a gallery was asked for).
        worst: the lowest-IoU samples not in ``best``, worst first.
        seconds: wall time of the evaluation.
    """

    scores: Scores
    settings: dict[str, Any]
    best: tuple[GallerySample, ...] = ()
    worst: tuple[GallerySample, ...] = ()
    seconds: float = 0.0
    title: str = field(default="diffris evaluation")

    def to_dict(self, *, samples: bool = False) -> dict[str, Any]:
        """``settings``, ``n``, the figures, ``per_category`` and, if asked, ``per_sample``."""
        return {"settings": self.settings, **self.scores.to_dict(samples=samples)}

    def write_json(self, path: str | os.PathLike[str], *, samples: bool = False) -> Path:
        """Write :meth:`to_dict` to ``path`` (atomically: a killed run leaves no partial file)."""
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(self.to_dict(samples=samples), indent=2) + "\n", "utf-8")
        partial.replace(path)
        return path

    def write_report(self, path: str | os.PathLike[str]) -> Path:
        """Write the self-contained HTML report (see :mod:`diffris.eval.report`)."""
        return write_report(
            Path(path),
            title=self.title,
            scores=self.scores,
            settings=self.settings,
            best=self.best,
            worst=self.worst,
        )


def check_outputs(paths: Sequence[str | os.PathLike[str] | None], *, overwrite: bool) -> None:
    """Fail before a long run if an output exists (without ``overwrite``) or cannot be written.

    Raises:
        OutputExistsError: an output exists and ``overwrite`` is false.
        OutputNotWritableError: an output's folder does not exist or is not writable.
    """
    for value in paths:
        if value is None or str(value) == "-":
            continue
        path = Path(value)
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
        folder = path.parent
        if not folder.is_dir():
            raise OutputNotWritableError(f"cannot write {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise OutputNotWritableError(f"cannot write {path}: folder {folder} is not writable")


def evaluate(
    dataset: str,
    root: str | os.PathLike[str],
    split: str = "test",
    *,
    model: str | os.PathLike[str] | None = None,
    predictions: str | os.PathLike[str] | None = None,
    pretrained: Pretrained = None,
    options: EvaluateOptions | None = None,
    progress: ProgressFn | None = None,
) -> EvaluationResult:
    """Score a model, or a folder of predicted masks, on a benchmark split.

    Args:
        dataset: ``rrsisd``, ``refsegrs``, ``risbench``, or ``synthetic`` for a folder written
            by ``diffris synth dataset`` in any of their layouts (see
            :func:`~diffris.data.base.open_dataset`).
        root: the dataset folder.
        split: ``train``, ``val`` or ``test``.
        model: a preset name or a trained-model folder (exclusive with ``predictions``).
        predictions: a folder of predicted masks named after the sample ids (see
            :mod:`diffris.eval.predictions`).
        pretrained: the frozen foundations' folders (see :data:`~diffris.models.names.
            Pretrained`).
        options: see :class:`EvaluateOptions`.
        progress: called with (samples done, samples to score).

    Raises:
        InputError: neither or both of ``model`` and ``predictions``, or a bad option.
        DatasetNotFoundError, DatasetFormatError: the dataset is missing or malformed.
        PredictionsIncompleteError: a sample has no prediction file.
    """
    started = time.perf_counter()
    options = options or EvaluateOptions()
    options.check()
    if (model is None) == (predictions is None):
        raise InputError("pass either --model or --predictions (exactly one of them)")
    size, resolution = options.image_size, Resolution(options.resolution)
    transforms = None
    if model is not None:
        transforms = ResizeToModel(size, keep_original_mask=resolution is Resolution.ORIGINAL)
    data = open_dataset(dataset, root, split, transforms)
    total = len(data) if options.limit is None else min(options.limit, len(data))
    indices = list(range(total))
    selector: GallerySelector[Any] = GallerySelector(options.gallery)
    # A synthetic folder is read by its layout's loader; name what was asked for, and the layout.
    synthetic = dataset.lower() == SYNTHETIC
    settings: dict[str, Any] = {
        "dataset": SYNTHETIC if synthetic else data.name,
        **({"layout": data.name} if synthetic else {}),
        "split": data.split.value,
        "root": str(data.root),
    }
    prediction_of: PredictionFn
    if predictions is not None:
        accumulator, prediction_of = _score_predictions_in(
            Path(predictions), data, indices, options, selector, progress
        )
        settings["predictions"] = str(predictions)
    else:
        from diffris.models.names import model_identity

        accumulator, prediction_of, device = _score_model_on(
            data, indices, str(model), pretrained, options, selector, progress
        )
        settings.update(
            model=model_identity(str(model)),
            device=str(device),
            precision=Precision(options.precision).value,
        )
    scores = accumulator.result()
    settings.update(
        resolution=resolution.value,
        image_size=size,
        samples=scores.n,
        split_samples=len(data),
        limit=options.limit,
        diffris=__version__,
    )
    best, worst = selector.best(), selector.worst()
    dataset_title = f"synthetic ({data.title} layout)" if synthetic else data.title
    show = dict(size=size, resolution=resolution, prediction_of=prediction_of)
    seconds = time.perf_counter() - started
    logger.info("scored %d of %d samples in %.1f s", scores.n, len(data), seconds)
    return EvaluationResult(
        scores=scores,
        settings=settings,
        best=tuple(gallery_samples(data, best, **show)),  # type: ignore[arg-type]
        worst=tuple(gallery_samples(data, worst, **show)),  # type: ignore[arg-type]
        seconds=seconds,
        title=f"{dataset_title} {data.split.value}: {settings.get('model') or 'predictions'}",
    )


def _score_predictions_in(
    folder: Path,
    data: ReferringDataset,
    indices: list[int],
    options: EvaluateOptions,
    selector: GallerySelector[Any],
    progress: ProgressFn | None,
) -> tuple[MetricAccumulator, PredictionFn]:
    """Find and score the prediction files and feed the gallery; see :func:`evaluate`."""
    size, resolution = options.image_size, Resolution(options.resolution)
    files = find_predictions(folder, data, indices)
    accumulator = score_predictions(
        data,
        files,
        indices,
        size=size,
        resolution=resolution,
        workers=options.workers,
        progress=progress,
        # Nothing to hold: the gallery reads its few files again.
        on_scored=lambda index, i, u: selector.offer(index, iou(i, u), lambda: None),
    )

    def prediction_of(pick: Pick[Any], original: tuple[int, int]) -> np.ndarray:
        path = files[pick.index]
        return fit_prediction(read_prediction(path), original, size, resolution, where=path)

    return accumulator, prediction_of


def _score_model_on(
    data: ReferringDataset,
    indices: list[int],
    model: str,
    pretrained: Pretrained,
    options: EvaluateOptions,
    selector: GallerySelector[Any],
    progress: ProgressFn | None,
) -> tuple[MetricAccumulator, PredictionFn, torch.device]:
    """Load the model, score ``indices`` and feed the gallery; see :func:`evaluate`."""
    from diffris.models.fast_path import prepare_for_inference, warn_if_slower
    from diffris.models.loading import load_model

    device = resolve_device(options.device)
    network = prepare_for_inference(load_model(model, pretrained=pretrained, device=device), device)
    warn_if_slower(device, Precision(options.precision))
    resolution = Resolution(options.resolution)

    def keep(logits: torch.Tensor, j: int) -> Any:
        # What the gallery redraws, held only for the 2K kept samples: the S x S mask, or the
        # logits to upsample exactly as score_logits does once the original size is known.
        if resolution is Resolution.INPUT:
            return logits_to_mask(logits[j : j + 1])[0].cpu().numpy()
        return logits[j].detach().float().clone()

    def on_scored(batch: list[int], logits: torch.Tensor, counts: list[tuple[int, int]]) -> None:
        for j, (index, (inter, union)) in enumerate(zip(batch, counts, strict=True)):
            selector.offer(index, iou(inter, union), lambda j=j: keep(logits, j))  # type: ignore[misc]

    def prediction_of(pick: Pick[Any], original: tuple[int, int]) -> np.ndarray:
        if resolution is Resolution.INPUT:
            return pick.payload
        upsampled = F.interpolate(
            pick.payload[None], size=original, mode="bilinear", align_corners=False
        )
        return logits_to_mask(upsampled)[0].cpu().numpy()

    loader = evaluation_loader(
        data, batch_size=options.batch_size, workers=options.workers, sampler=indices
    )
    accumulator = score_model(
        network,
        loader,
        resolution=resolution,
        device=device,
        precision=Precision(options.precision),
        progress=progress,
        on_scored=on_scored,
    )
    return accumulator, prediction_of, device
