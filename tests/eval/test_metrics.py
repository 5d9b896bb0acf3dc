"""The evaluation protocol of DATASETS.md, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffris.errors import InputError
from diffris.eval.metrics import (
    THRESHOLDS,
    MetricAccumulator,
    Resolution,
    iou_counts,
    logits_to_mask,
    merge_accumulators,
    resize_mask_nearest,
    score_logits,
)


def masks_with(intersection: int, only_pred: int, only_gt: int, size: int = 64) -> tuple:
    """A (pred, gt) pair with exactly these pixel counts (union = sum of the three)."""
    flat_pred, flat_gt = np.zeros(size * size, bool), np.zeros(size * size, bool)
    flat_pred[:intersection] = flat_gt[:intersection] = True
    flat_pred[intersection : intersection + only_pred] = True
    flat_gt[intersection + only_pred : intersection + only_pred + only_gt] = True
    return flat_pred.reshape(size, size), flat_gt.reshape(size, size)


def scores_of(*pairs: tuple[int, int], categories=None):
    accumulator = MetricAccumulator()
    for k, (i, u) in enumerate(pairs):
        accumulator.add(f"s{k}", i, u, None if categories is None else categories[k])
    return accumulator.result()


def test_iou_counts():
    pred, gt = masks_with(3, 2, 4)
    assert iou_counts(pred, gt) == (3, 9)
    with pytest.raises(InputError, match="differ in shape"):
        iou_counts(pred, gt[:10])


def test_empty_prediction_of_empty_object_scores_zero_and_counts():
    empty = np.zeros((8, 8), bool)
    assert iou_counts(empty, empty) == (0, 0)
    scores = scores_of((0, 0), (5, 5))
    assert scores.n == 2
    assert scores.miou == 50.0  # (0 + 1) / 2
    assert scores.pr_at[0.5] == 50.0
    assert scores.oiou == 100.0  # 5 / 5
    alone = scores_of((0, 0))
    assert (alone.n, alone.miou, alone.oiou, alone.pr_at[0.5]) == (1, 0.0, 0.0, 0.0)


def test_iou_exactly_at_thresholds_counts():
    half = iou_counts(*masks_with(2, 1, 1))  # I = 2, U = 4
    nine_tenths = iou_counts(*masks_with(9, 1, 0))  # I = 9, U = 10
    assert half == (2, 4) and nine_tenths == (9, 10)
    scores = scores_of(half, nine_tenths)
    assert scores.pr_at == {0.5: 100.0, 0.6: 50.0, 0.7: 50.0, 0.8: 50.0, 0.9: 50.0}
    just_below = scores_of((899_999, 1_000_000))
    assert just_below.pr_at[0.9] == 0.0 and just_below.pr_at[0.8] == 100.0
    assert tuple(scores.pr_at) == THRESHOLDS


def test_oiou_differs_from_miou():
    # IoU 1/2 on a small object, 90/100 on a large one:
    # mIoU = (0.5 + 0.9) / 2 = 0.70; oIoU = (1 + 90) / (2 + 100) = 91 / 102 = 0.892156...
    scores = scores_of((1, 2), (90, 100))
    assert scores.miou == 70.0
    assert scores.oiou == 89.22
    assert scores.n == 2


def test_percent_two_decimals_half_up():
    assert scores_of((1, 3)).miou == 33.33
    assert scores_of((2, 3)).miou == 66.67
    assert scores_of((12345, 100000)).oiou == 12.35  # binary floats would give 12.34
    eight = scores_of((1, 1), *[(0, 1)] * 7)
    assert eight.pr_at[0.5] == 12.5
    assert eight.miou == 12.5


def test_resolution_modes_differ():
    """2x2 logits, 3x3 ground truth with a 2x2 object in the top-left corner.

    INPUT: gt resized to 2x2 by nearest takes rows/cols floor((2j+1)*3/4) = 0, 2, so gt_small =
    [[1, 0], [0, 0]] = prediction [[1, 0], [0, 0]]: I = 1, U = 1.
    ORIGINAL: bilinear (align_corners=False) 2 -> 3 maps output 0 -> input 0, output 1 -> the mean
    of inputs 0 and 1, output 2 -> input 1. Logits [[2, -2], [-2, -2]] become
    [[2, 0, -2], [0, -1, -2], [-2, -2, -2]]; only logit 2 is > 0: I = 1, U = 4.
    """
    logits = torch.tensor([[[[2.0, -2.0], [-2.0, -2.0]]]])
    gt = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], bool)
    assert score_logits(logits, [gt], Resolution.INPUT) == [(1, 1)]
    assert score_logits(logits, [gt], Resolution.ORIGINAL) == [(1, 4)]
    assert score_logits(logits, [torch.from_numpy(gt)], "original") == [(1, 4)]
    assert score_logits(logits, [gt]) == [(1, 1)]  # INPUT is the default


def test_score_logits_checks_batch():
    with pytest.raises(InputError, match="2 logits but 1"):
        score_logits(torch.zeros(2, 1, 4, 4), [np.zeros((4, 4), bool)])


def test_logits_to_mask_one_and_two_channels():
    one = torch.tensor([[[[0.0, 1e-6], [-3.0, 5.0]]]])
    assert logits_to_mask(one).tolist() == [[[False, True], [False, True]]]  # sigmoid(0) = 0.5
    two = torch.tensor([[[[1.0, 0.0], [2.0, 2.0]], [[0.0, 1.0], [1.0, 2.0]]]])
    assert logits_to_mask(two).tolist() == [[[False, True], [False, False]]]  # tie: background
    with pytest.raises(InputError, match="expected"):
        logits_to_mask(torch.zeros(1, 3, 2, 2))


@pytest.mark.parametrize(("source", "target"), [(800, 512), (64, 512), (96, 64), (100, 37)])
def test_resize_mask_nearest_matches_pil(source, target):
    """Same pixels as PIL's NEAREST (the reference loaders' resize), except at exact ties.

    At a tie the centre (j + 0.5) * in / out is an integer k; PIL's floating point can land
    just below k and take k - 1, the exact computation takes k (100 -> 37: j = 18, k = 50).
    """
    rng = np.random.default_rng(source)
    mask = rng.integers(0, 2, (source, source + 7)).astype(np.uint8)
    mine = resize_mask_nearest(mask, (target, target + 3))
    pil = np.asarray(Image.fromarray(mask).resize((target + 3, target), Image.Resampling.NEAREST))
    rows = np.arange(target)
    ties = ((2 * rows + 1) * source) % (2 * target) == 0
    assert np.array_equal(mine[~ties], pil[~ties])
    assert set(np.unique(mine)) <= {0, 1}
    assert ties.any() == (source == 100)


def test_resize_mask_nearest_exact_at_ties():
    ramp = np.arange(100)[:, None]
    assert resize_mask_nearest(ramp, (37, 1))[18, 0] == 50
    assert np.array_equal(resize_mask_nearest(ramp, (100, 1)), ramp)  # identity


def test_accumulator_merges_ranks_and_categories():
    rank0, rank1 = MetricAccumulator(), MetricAccumulator()
    rank0.add("a", 1, 2, "ship")
    rank0.add("b", 9, 10, "ship")
    rank1.add("c", 0, 4, "dam")
    rank1.add("a", 1, 2, "ship")  # DistributedSampler padding repeats a sample: kept once
    rank1.add("d", 3, 3)  # unknown category: only in the totals
    merged = merge_accumulators([rank0, MetricAccumulator.from_dict(rank1.to_dict())])
    scores = merged.result()
    assert scores.n == 4
    assert scores.oiou == round(100 * 13 / 19, 2)
    assert scores.miou == 60.0  # (0.5 + 0.9 + 0 + 1) / 4
    assert set(scores.per_category) == {"ship", "dam"}
    assert scores.per_category["ship"].n == 2 and scores.per_category["ship"].miou == 70.0
    assert scores.per_category["dam"].pr_at[0.5] == 0.0
    assert [s.sample_id for s in scores.per_sample] == ["a", "b", "c", "d"]
    assert scores.per_sample[1].iou == 0.9
    assert scores.to_dict()["Pr@0.5"] == 75.0
    assert list(scores.figures()) == [
        "Pr@0.5",
        "Pr@0.6",
        "Pr@0.7",
        "Pr@0.8",
        "Pr@0.9",
        "oIoU",
        "mIoU",
    ]
    assert scores.to_dict(samples=True)["per_sample"][1] == {
        "sample_id": "b",
        "I": 9,
        "U": 10,
        "IoU": 0.9,
    }
    conflicting = MetricAccumulator()
    conflicting.add("a", 2, 2)
    with pytest.raises(InputError, match="sample a was scored twice"):
        merged.merge(conflicting)


def test_accumulator_rejects_impossible_counts():
    with pytest.raises(InputError, match="0 <= I <= U"):
        MetricAccumulator().add("x", 5, 4)
