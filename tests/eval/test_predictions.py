"""Scoring folders of predicted masks: file naming, pixel rules, sizes, against real files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from diffris.data.base import open_dataset
from diffris.data.synthetic import write_dataset
from diffris.errors import InputError, InputNotFoundError
from diffris.eval.metrics import Resolution, iou_counts, resize_mask_nearest
from diffris.eval.predictions import (
    PredictionsIncompleteError,
    find_predictions,
    fit_prediction,
    prediction_file,
    prediction_stems,
    read_prediction,
    score_predictions,
)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _tiff(path: Path, array: np.ndarray) -> Path:
    bands = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return _write_tiff(path, bands)


def _write_tiff(path: Path, bands: np.ndarray) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=bands.shape[2],
        height=bands.shape[1],
        count=bands.shape[0],
        dtype=bands.dtype,
    ) as dst:
        dst.write(bands)
    return path


@pytest.fixture(scope="module")
def risbench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("risbench")
    write_dataset(root, layout="risbench", samples=8, splits=(2, 2, 4), size=64, seed=3)
    return root


def test_stems_nested_and_flat():
    assert prediction_stems("test/123", "test") == ("test/123", "123")
    assert prediction_stems("test/123#2", "test") == ("test/123#2", "123#2")
    assert prediction_stems("17_17", "test") == ("17_17",)  # RRSIS-D ids have no split prefix
    assert prediction_file("val/train_5_2", "val") == "train_5_2.png"
    assert prediction_file("17_17", "val", ".tif") == "17_17.tif"


def test_find_accepts_nested_flat_and_any_suffix_case(risbench, tmp_path):
    data = open_dataset("risbench", risbench, "test")
    ids = [data.meta(i).sample_id for i in range(len(data))]
    empty = np.zeros((64, 64), np.uint8)
    _png(tmp_path / f"{ids[0]}.png", empty)  # test/<name>.png
    _png(tmp_path / prediction_file(ids[1], "test"), empty)  # <name>.png
    _tiff(tmp_path / (prediction_file(ids[2], "test", ".TIF")), empty)
    _png(tmp_path / "test" / (ids[3].split("/")[1] + ".png"), empty)
    _png(tmp_path / "unrelated.png", empty)
    found = find_predictions(tmp_path, data, range(4))
    assert [found[i].relative_to(tmp_path).as_posix() for i in range(4)] == [
        f"{ids[0]}.png",
        prediction_file(ids[1], "test"),
        prediction_file(ids[2], "test", ".TIF"),
        f"{ids[3]}.png",
    ]


def test_missing_files_name_the_first_and_the_count(risbench, tmp_path):
    data = open_dataset("risbench", risbench, "test")
    _png(tmp_path / prediction_file(data.meta(1).sample_id, "test"), np.zeros((64, 64), np.uint8))
    with pytest.raises(PredictionsIncompleteError) as caught:
        find_predictions(tmp_path, data, range(4))
    message = str(caught.value)
    first = data.meta(0).sample_id
    assert message.startswith(f"3 of 4 samples have no prediction in {tmp_path}")
    assert f"the first is {first}" in message
    assert str(tmp_path / f"{first}.png") in message
    assert "\n" not in message
    assert isinstance(caught.value, FileNotFoundError)


def test_two_files_for_one_sample_is_an_error(risbench, tmp_path):
    data = open_dataset("risbench", risbench, "test")
    sample_id = data.meta(0).sample_id
    _png(tmp_path / prediction_file(sample_id, "test"), np.zeros((64, 64), np.uint8))
    _tiff(tmp_path / prediction_file(sample_id, "test", ".tif"), np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match=f"sample {sample_id} has 2 prediction files"):
        find_predictions(tmp_path, data, [0])


def test_missing_folder(risbench, tmp_path):
    data = open_dataset("risbench", risbench, "test")
    with pytest.raises(InputNotFoundError, match="does not exist"):
        find_predictions(tmp_path / "nope", data, [0])


def test_pixel_rules(tmp_path):
    target = np.zeros((8, 8), bool)
    target[2:5, 3:7] = True
    as_01 = target.astype(np.uint8)
    assert np.array_equal(read_prediction(_png(tmp_path / "a.png", as_01)), target)
    assert np.array_equal(read_prediction(_png(tmp_path / "b.png", as_01 * 255)), target)
    # 8-bit probabilities: > 127 is the object; 100 is not.
    probs = np.where(target, 200, 100).astype(np.uint8)
    assert np.array_equal(read_prediction(_png(tmp_path / "c.png", probs)), target)
    float_probs = np.where(target, 0.75, 0.5).astype(np.float32)  # exactly 0.5 is background
    assert np.array_equal(read_prediction(_tiff(tmp_path / "d.tif", float_probs)), target)
    rgb = np.repeat((as_01 * 255)[:, :, None], 3, axis=2)
    assert np.array_equal(read_prediction(_png(tmp_path / "e.png", rgb)), target)
    assert np.array_equal(read_prediction(_tiff(tmp_path / "f.tif", as_01)), target)
    assert not read_prediction(_png(tmp_path / "g.png", np.zeros((8, 8), np.uint8))).any()
    bilevel = tmp_path / "h.png"
    Image.fromarray(target).convert("1").save(bilevel)
    assert np.array_equal(read_prediction(bilevel), target)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        read_prediction(tmp_path / "broken.png")


def test_fit_prediction_sizes():
    rng = np.random.default_rng(0)
    original = rng.random((96, 128)) > 0.5
    at_input = rng.random((64, 64)) > 0.5
    # INPUT: S x S as is, H x W resized like the ground truth.
    assert fit_prediction(at_input, (96, 128), 64, Resolution.INPUT) is at_input
    assert np.array_equal(
        fit_prediction(original, (96, 128), 64, Resolution.INPUT),
        resize_mask_nearest(original, 64),
    )
    # ORIGINAL: H x W as is, S x S upsampled with nearest neighbour.
    assert fit_prediction(original, (96, 128), 64, Resolution.ORIGINAL) is original
    assert np.array_equal(
        fit_prediction(at_input, (96, 128), 64, Resolution.ORIGINAL),
        resize_mask_nearest(at_input, (96, 128)),
    )
    with pytest.raises(InputError, match=r"p.png is 50x50 px; expected the input size 64x64"):
        fit_prediction(np.zeros((50, 50), bool), (96, 128), 64, Resolution.INPUT, where="p.png")


@pytest.mark.parametrize("resolution", list(Resolution))
@pytest.mark.parametrize("workers", [0, 2])
def test_score_predictions_counts(risbench, tmp_path, resolution, workers):
    data = open_dataset("risbench", risbench, "test")
    expected = {}
    for index in range(len(data)):
        truth = data.sample(index).mask
        prediction = np.roll(truth, 2 * index, axis=1)  # 0, 2, 4, 6 px shifts
        name = prediction_file(data.meta(index).sample_id, "test")
        _png(tmp_path / name, prediction.astype(np.uint8) * 255)
        if resolution is Resolution.INPUT:
            truth, prediction = resize_mask_nearest(truth, 32), resize_mask_nearest(prediction, 32)
        expected[data.meta(index).sample_id] = iou_counts(prediction, truth)
    files = find_predictions(tmp_path, data, range(len(data)))
    seen = []
    progress = []
    accumulator = score_predictions(
        data,
        files,
        range(len(data)),
        size=32,
        resolution=resolution,
        workers=workers,
        on_scored=lambda index, i, u: seen.append((index, i, u)),
        progress=lambda done, total: progress.append((done, total)),
    )
    scores = accumulator.result()
    assert {s.sample_id: (s.intersection, s.union) for s in scores.per_sample} == expected
    assert [index for index, _, _ in seen] == list(range(len(data)))
    assert progress[-1] == (4, 4)
    assert scores.per_sample[0].iou == 1.0  # the unshifted prediction
