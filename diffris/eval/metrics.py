"""Referring-segmentation scores: the protocol of DATASETS.md, shared by evaluation and training.

Per sentence: I = |pred AND gt|, U = |pred OR gt|, IoU = I / U, and IoU = 0 when U = 0 (an empty
prediction of an empty object scores 0 and still counts). Over a split: mIoU = mean IoU,
Pr@X = fraction of sentences with IoU >= X for X in 0.5 ... 0.9, oIoU = sum(I) / sum(U). All are
reported x100 with two decimals (half-up), with the number of sentences scored.

Thresholds are compared exactly in integers (``I * 10 >= U * 5``), so an IoU of exactly 0.5
counts for Pr@0.5 whatever floating point would say.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from diffris.data.masks import resize_mask_nearest
from diffris.errors import InputError

logger = logging.getLogger(__name__)

#: The Pr@X thresholds of the protocol.
THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


class Resolution(enum.StrEnum):
    """Where prediction and ground truth are compared.

    INPUT: at the network input size S x S; the ground truth is resized with nearest neighbour
    (the standard protocol). ORIGINAL: the logits are upsampled bilinearly to the image's H x W
    and compared with the raw ground truth (what some papers do).
    """

    INPUT = "input"
    ORIGINAL = "original"


def iou_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Intersection and union pixel counts of two masks.

    Args:
        pred: (H, W) bool prediction.
        gt: (H, W) bool ground truth.

    Returns:
        (I, U) in pixels.

    Raises:
        InputError: the shapes differ.
    """
    if pred.shape != gt.shape:
        raise InputError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    pred, gt = pred.astype(bool, copy=False), gt.astype(bool, copy=False)
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


def iou(intersection: int, union: int) -> float:
    """I / U, and 0 when U = 0."""
    return intersection / union if union else 0.0


def logits_to_mask(logits: torch.Tensor) -> torch.Tensor:
    """Binary masks from logits: logit > 0 for one channel (sigmoid > 0.5), argmax for two.

    Args:
        logits: (B, C, H, W) with C = 1 or 2; for C = 2, channel 1 is the object (ties go to
            the background, as ``argmax`` picks the first maximum).

    Returns:
        (B, H, W) bool.
    """
    if logits.ndim != 4 or logits.shape[1] not in (1, 2):
        raise InputError(f"logits of shape {tuple(logits.shape)}; expected (B, 1 or 2, H, W)")
    if logits.shape[1] == 1:
        return logits[:, 0] > 0
    return logits.argmax(dim=1) == 1


def score_logits(
    logits: torch.Tensor,
    masks: Sequence[np.ndarray | torch.Tensor],
    resolution: Resolution | str = Resolution.INPUT,
) -> list[tuple[int, int]]:
    """(I, U) for each item of a batch, at the chosen resolution.

    Args:
        logits: (B, C, S, S) network output at the network input size S (C = 1 or 2); the
            model's ``forward`` already upsamples to that size.
        masks: B ground-truth masks, each (H, W) bool at the image's original size (a mask
            already at S x S also works in INPUT mode: resizing it is the identity).
        resolution: see :class:`Resolution`.

    Returns:
        B pairs (I, U), in pixels at the chosen resolution.
    """
    resolution = Resolution(resolution)  # also accepts "input" / "original"
    if len(masks) != logits.shape[0]:
        raise InputError(f"{logits.shape[0]} logits but {len(masks)} ground-truth masks")
    gts = [
        m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m) for m in masks
    ]
    gts = [gt[0] if gt.ndim == 3 and gt.shape[0] == 1 else gt for gt in gts]
    counts = []
    if resolution is Resolution.INPUT:
        preds = logits_to_mask(logits.detach()).cpu().numpy()
        for pred, gt in zip(preds, gts, strict=True):
            counts.append(iou_counts(pred, resize_mask_nearest(gt, pred.shape).astype(bool)))
        return counts
    for item, gt in zip(logits.detach(), gts, strict=True):
        upsampled = F.interpolate(
            item[None].float(), size=gt.shape, mode="bilinear", align_corners=False
        )
        counts.append(iou_counts(logits_to_mask(upsampled)[0].cpu().numpy(), gt.astype(bool)))
    return counts


@dataclass(frozen=True, slots=True)
class SampleScore:
    """One sentence's counts. ``iou`` is I / U (0 when U = 0), a fraction in [0, 1]."""

    sample_id: str
    intersection: int
    union: int
    category: str | None = None

    @property
    def iou(self) -> float:
        return iou(self.intersection, self.union)


@dataclass(frozen=True)
class Scores:
    """The scores of a set of sentences; every figure is x100, rounded to two decimals.

    Attributes:
        n: number of sentences scored.
        miou: mean of the per-sentence IoU.
        oiou: sum(I) / sum(U).
        pr_at: threshold (0.5 ... 0.9) -> percentage of sentences with IoU >= threshold.
        per_category: the same scores for each known category (sentences whose category is
            None are only in the totals).
        per_sample: each sentence's counts, sorted by sample id (for galleries). A category's
            own Scores leave per_category and per_sample empty.
    """

    n: int
    miou: float
    oiou: float
    pr_at: dict[float, float]
    per_category: dict[str, Scores] = field(default_factory=dict)
    per_sample: tuple[SampleScore, ...] = ()

    def figures(self) -> dict[str, float]:
        """The figures in the papers' column order: Pr@0.5 ... Pr@0.9, oIoU, mIoU (x100)."""
        return {
            **{f"Pr@{threshold}": value for threshold, value in self.pr_at.items()},
            "oIoU": self.oiou,
            "mIoU": self.miou,
        }

    def to_dict(self, *, samples: bool = False) -> dict[str, Any]:
        """Plain JSON-able values: ``n``, the :meth:`figures`, per category; samples if asked."""
        result: dict[str, Any] = {"n": self.n, **self.figures()}
        if self.per_category:
            result["per_category"] = {
                name: scores.to_dict() for name, scores in self.per_category.items()
            }
        if samples:
            result["per_sample"] = [
                {"sample_id": s.sample_id, "I": s.intersection, "U": s.union, "IoU": s.iou}
                for s in self.per_sample
            ]
        return result


class MetricAccumulator:
    """Collects per-sentence counts and turns them into :class:`Scores`.

    Accumulators of several processes merge by the union of their samples. A sample id added
    twice with the same counts is kept once (``DistributedSampler`` pads ranks by repeating
    samples); with different counts it is an error.
    """

    def __init__(self) -> None:
        self._samples: dict[str, SampleScore] = {}

    def __len__(self) -> int:
        return len(self._samples)

    def add(
        self, sample_id: str, intersection: int, union: int, category: str | None = None
    ) -> None:
        """Record one sentence's counts (pixels; see :func:`iou_counts`)."""
        intersection, union = int(intersection), int(union)
        if not 0 <= intersection <= union:
            raise InputError(
                f"sample {sample_id}: intersection {intersection} and union {union} are not "
                "counts with 0 <= I <= U"
            )
        self._put(SampleScore(sample_id, intersection, union, category))

    def _put(self, score: SampleScore) -> None:
        previous = self._samples.get(score.sample_id)
        if previous is None:
            self._samples[score.sample_id] = score
        elif previous != score:
            raise InputError(
                f"sample {score.sample_id} was scored twice with different counts "
                f"({previous.intersection}/{previous.union} and "
                f"{score.intersection}/{score.union})"
            )
        else:
            logger.debug("sample %s scored twice with equal counts; kept once", score.sample_id)

    def merge(self, *others: MetricAccumulator) -> MetricAccumulator:
        """Add the samples of ``others`` (e.g. other ranks); returns ``self``."""
        for other in others:
            for score in other._samples.values():
                self._put(score)
        return self

    def to_dict(self) -> dict[str, list[Any]]:
        """Plain lists, to send between processes (``all_gather_object``) or save as JSON."""
        ordered = sorted(self._samples.values(), key=lambda s: s.sample_id)
        return {
            "sample_id": [s.sample_id for s in ordered],
            "intersection": [s.intersection for s in ordered],
            "union": [s.union for s in ordered],
            "category": [s.category for s in ordered],
        }

    @classmethod
    def from_dict(cls, values: dict[str, list[Any]]) -> MetricAccumulator:
        """The inverse of :meth:`to_dict`."""
        accumulator = cls()
        columns = (values["sample_id"], values["intersection"], values["union"], values["category"])
        for sample_id, intersection, union, category in zip(*columns, strict=True):
            accumulator.add(sample_id, intersection, union, category)
        return accumulator

    def result(self) -> Scores:
        """The scores of everything added, with a breakdown per known category.

        With no samples, every figure is 0.0 and ``n`` is 0.
        """
        ordered = tuple(sorted(self._samples.values(), key=lambda s: s.sample_id))
        categories = sorted({s.category for s in ordered if s.category is not None})
        per_category = {
            name: _scores([s for s in ordered if s.category == name], ()) for name in categories
        }
        return _scores(ordered, ordered, per_category)


def _scores(
    samples: Sequence[SampleScore],
    keep: tuple[SampleScore, ...],
    per_category: dict[str, Scores] | None = None,
) -> Scores:
    n = len(samples)
    total_i = sum(s.intersection for s in samples)
    total_u = sum(s.union for s in samples)
    pr_at = {}
    for threshold in THRESHOLDS:
        exact = Fraction(str(threshold))
        hits = sum(
            1
            for s in samples
            if s.union and s.intersection * exact.denominator >= s.union * exact.numerator
        )
        pr_at[threshold] = _percent(hits, n)
    return Scores(
        n=n,
        miou=_percent(math.fsum(s.iou for s in samples), n),
        oiou=_percent(total_i, total_u),
        pr_at=pr_at,
        per_category=per_category or {},
        per_sample=keep,
    )


def _percent(numerator: float, denominator: int) -> float:
    """100 * numerator / denominator rounded half-up to two decimals; 0.0 when denominator is 0.

    Decimal arithmetic on the exact operands, so that e.g. 1/8 gives 12.5 and 12345/100000 gives
    12.35 (binary floating point would round that one down).
    """
    if not denominator:
        return 0.0
    with localcontext() as context:
        context.prec = 60
        value = Decimal(numerator) * 100 / Decimal(denominator)
        return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def merge_accumulators(accumulators: Iterable[MetricAccumulator]) -> MetricAccumulator:
    """One accumulator holding the union of ``accumulators`` (e.g. gathered from all ranks)."""
    return MetricAccumulator().merge(*accumulators)
