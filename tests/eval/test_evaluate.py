"""``evaluate``: each architecture's tiny model and prediction folders on real synthetic datasets,
the gallery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffris.data.base import open_dataset
from diffris.data.synthetic import write_dataset
from diffris.data.transforms import ResizeToModel
from diffris.errors import InputError
from diffris.eval.evaluate import (
    EvaluateOptions,
    EvaluationResult,
    check_outputs,
    evaluate,
    evaluation_loader,
    score_model,
)
from diffris.eval.gallery import GallerySelector
from diffris.eval.metrics import Resolution, iou, iou_counts, resize_mask_nearest
from diffris.eval.predictions import prediction_file
from diffris.models.loading import load_model

#: Images are 128 px and the network input 64 px, so INPUT and ORIGINAL resolutions differ.
DATA_SIZE, INPUT_SIZE = 128, 64


@pytest.fixture(scope="module")
def refsegrs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("refsegrs")
    write_dataset(root, layout="refsegrs", samples=10, splits=(2, 2, 6), size=DATA_SIZE, seed=1)
    return root


@pytest.fixture(scope="module")
def tiny(model_preset) -> torch.nn.Module:
    return load_model(model_preset)


def _options(**changes) -> EvaluateOptions:
    return EvaluateOptions(image_size=INPUT_SIZE, device="cpu", gallery=2).replace(**changes)


@pytest.fixture(scope="module")
def results(refsegrs, model_preset) -> dict[Resolution, EvaluationResult]:
    """Each tiny model on the test split at both resolutions (batch size 8, in-process)."""
    options = {resolution: _options(resolution=resolution) for resolution in Resolution}
    return {
        resolution: evaluate(
            "refsegrs", refsegrs, "test", model=model_preset, options=options[resolution]
        )
        for resolution in Resolution
    }


# -- the gallery -------------------------------------------------------------------------------


def test_selector_keeps_best_and_worst_whatever_the_order():
    ious = [0.3, 0.9, 0.0, 0.9, 0.5, 0.0, 0.7, 0.1]
    picks = []
    for order in (range(8), reversed(range(8)), [3, 7, 0, 5, 1, 6, 2, 4]):
        selector: GallerySelector[int] = GallerySelector(3)
        for index in order:
            selector.offer(index, ious[index], lambda index=index: index * 10)
        best, worst = selector.best(), selector.worst()
        picks.append(([(p.index, p.iou, p.payload) for p in best], [p.index for p in worst]))
    assert picks[0] == picks[1] == picks[2]
    best, worst = picks[0]
    assert best == [(1, 0.9, 10), (3, 0.9, 30), (6, 0.7, 60)]  # ties: lower index first
    assert worst == [2, 5, 7]


def test_selector_sides_do_not_overlap_and_payloads_are_lazy():
    calls = []
    selector: GallerySelector[int] = GallerySelector(4)
    for index, value in enumerate([0.2, 0.8, 0.5]):
        selector.offer(index, value, lambda index=index: calls.append(index) or index)
    assert [p.index for p in selector.best()] == [1, 2, 0]
    assert selector.worst() == []  # all three are among the best already
    none: GallerySelector[int] = GallerySelector(0)
    none.offer(0, 0.5, lambda: calls.append(-1) or 0)
    assert none.best() == [] and -1 not in calls
    with pytest.raises(InputError, match="gallery size -1"):
        GallerySelector(-1)


# -- the shared loop ---------------------------------------------------------------------------


def test_score_model_hooks_see_every_batch_with_counts(refsegrs, tiny):
    data = open_dataset("refsegrs", refsegrs, "test", ResizeToModel(INPUT_SIZE))
    loader = evaluation_loader(data, batch_size=4, sampler=range(5))
    batches, scored = [], []
    accumulator = score_model(
        tiny,
        loader,
        on_batch=lambda indices, logits: batches.append((indices, tuple(logits.shape))),
        on_scored=lambda indices, logits, counts: scored.append((indices, counts)),
    )
    assert batches == [([0, 1, 2, 3], (4, 1, 64, 64)), ([4], (1, 1, 64, 64))]
    counts = {
        data.meta(i).sample_id: c
        for indices, cs in scored
        for i, c in zip(indices, cs, strict=True)
    }
    assert counts == {
        s.sample_id: (s.intersection, s.union) for s in accumulator.result().per_sample
    }


# -- evaluate() --------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", list(Resolution))
def test_model_gallery_shows_what_was_scored(refsegrs, results, resolution, model_preset):
    result = results[resolution]
    scored = {s.sample_id: s for s in result.scores.per_sample}
    assert result.scores.n == 6 and len(result.best) == 2 and len(result.worst) == 2
    side = INPUT_SIZE if resolution is Resolution.INPUT else DATA_SIZE
    for sample in result.best + result.worst:
        assert sample.image.shape == (side, side, 3) and sample.prediction.shape == (side, side)
        # The overlay is exactly what was scored: recomputing I and U from it gives the counts.
        counts = iou_counts(sample.prediction, sample.truth)
        assert counts == (scored[sample.sample_id].intersection, scored[sample.sample_id].union)
        assert sample.iou == scored[sample.sample_id].iou
    # Ranked by IoU, ties by dataset index (lower first) on both sides.
    data = open_dataset("refsegrs", refsegrs, "test")
    position = {data.meta(i).sample_id: i for i in range(len(data))}
    samples = result.scores.per_sample
    best = sorted(samples, key=lambda s: (-s.iou, position[s.sample_id]))[:2]
    worst = sorted(samples, key=lambda s: (s.iou, position[s.sample_id]))[:2]
    assert [s.sample_id for s in result.best] == [s.sample_id for s in best]
    assert [s.sample_id for s in result.worst] == [s.sample_id for s in worst]
    assert result.settings["resolution"] == resolution.value
    assert result.settings["samples"] == 6 and result.settings["model"] == model_preset


def test_batch_size_and_workers_do_not_change_the_result(refsegrs, results, model_preset):
    eight = results[Resolution.INPUT]
    three = evaluate(
        "refsegrs", refsegrs, "test", model=model_preset, options=_options(batch_size=3, workers=2)
    )
    assert three.scores == eight.scores
    assert [s.sample_id for s in three.best + three.worst] == [
        s.sample_id for s in eight.best + eight.worst
    ]


def test_limit_scores_the_first_samples(refsegrs):
    result = evaluate("refsegrs", refsegrs, "test", model="tiny", options=_options(limit=3))
    data = open_dataset("refsegrs", refsegrs, "test")
    assert [s.sample_id for s in result.scores.per_sample] == sorted(
        data.meta(i).sample_id for i in range(3)
    )
    assert result.settings["limit"] == 3 and result.settings["split_samples"] == 6


def test_predictions_folder_equals_hand_counts(refsegrs, tmp_path):
    data = open_dataset("refsegrs", refsegrs, "test")
    expected = []
    for index in range(len(data)):
        truth = resize_mask_nearest(data.sample(index).mask, INPUT_SIZE)
        prediction = truth if index % 2 else np.zeros_like(truth)
        name = prediction_file(data.meta(index).sample_id, "test")
        Image.fromarray(prediction.astype(np.uint8)).save(tmp_path / name)  # 0/1 masks
        expected.append(iou_counts(prediction, truth))
    result = evaluate(
        "refsegrs", refsegrs, "test", predictions=tmp_path, options=_options(gallery=3)
    )
    assert [(s.intersection, s.union) for s in result.scores.per_sample] == expected
    assert result.scores.miou == 50.0 and result.scores.pr_at[0.9] == 50.0
    assert {s.iou for s in result.best} == {1.0} and {s.iou for s in result.worst} == {0.0}
    for sample in result.best + result.worst:
        assert iou(*iou_counts(sample.prediction, sample.truth)) == sample.iou
    assert result.settings["predictions"] == str(tmp_path) and "model" not in result.settings


def test_exactly_one_source_and_checked_options(refsegrs, tmp_path):
    with pytest.raises(InputError, match="exactly one"):
        evaluate("refsegrs", refsegrs, "test", options=_options())
    with pytest.raises(InputError, match="exactly one"):
        evaluate("refsegrs", refsegrs, "test", model="tiny", predictions=tmp_path)
    with pytest.raises(InputError, match="--limit 0 must be at least 1"):
        evaluate("refsegrs", refsegrs, "test", model="tiny", options=_options(limit=0))
    with pytest.raises(InputError, match="not a multiple of 64"):
        evaluate("refsegrs", refsegrs, "test", model="tiny", options=_options(image_size=100))
    assert EvaluateOptions.from_dict(_options().to_dict()) == _options()


def test_json_and_output_checks(results, tmp_path):
    result = results[Resolution.INPUT]
    path = result.write_json(tmp_path / "scores.json", samples=True)
    written = json.loads(path.read_text())
    assert written["n"] == 6 and written["settings"]["dataset"] == "refsegrs"
    assert [s["sample_id"] for s in written["per_sample"]] == [
        s.sample_id for s in result.scores.per_sample
    ]
    assert list(tmp_path.iterdir()) == [path]  # no partial file left
    check_outputs([path, None, "-"], overwrite=True)
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        check_outputs([path], overwrite=False)
    with pytest.raises(PermissionError, match="does not exist"):
        check_outputs([tmp_path / "no" / "r.html"], overwrite=False)
