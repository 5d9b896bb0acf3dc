"""RRSIS-D loader on the tiny tree of tests/data/rrsisd (see its data.py for what is where)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from diffris.data.base import DATASETS, DatasetFormatError, Split, open_dataset
from diffris.data.rrsisd import RRSISD
from diffris.errors import DatasetNotFoundError, InputError, UnsafePickleError

ROOT = Path(__file__).parent / "rrsisd"
INSTANCES = "rrsisd/instances.json"
REFS = "rrsisd/refs(unc).p"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "RRSIS-D"
    shutil.copytree(ROOT, root)
    return root


def edit_instances(root: Path, change) -> None:
    path = root / INSTANCES
    instances = json.loads(path.read_text())
    change(instances)
    path.write_text(json.dumps(instances))


def edit_refs(root: Path, change) -> None:
    path = root / REFS
    refs = pickle.loads(path.read_bytes())  # our own fixture, written by data.py
    change(refs)
    path.write_bytes(pickle.dumps(refs, protocol=2))


def box(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def test_sample_counts_per_split():
    assert [len(RRSISD(ROOT, split)) for split in ("train", "val", "test")] == [4, 1, 2]


def test_every_sentence_is_a_sample():
    train = RRSISD(ROOT, Split.TRAIN)
    assert [train.meta(i).sample_id for i in range(len(train))] == ["1_1", "2_2", "2_3", "3_4"]
    assert train[1].sentence == "The airplane at the top right"  # the 'raw' text
    assert train[2].sentence == "A plane near the right edge"
    assert train[1].meta.image_file == train[2].meta.image_file


def test_compressed_rle_non_square_image():
    sample = RRSISD(ROOT, "train")[1]
    assert sample.image.shape == (64, 96, 3) and sample.image.dtype == np.uint8
    assert sample.mask.dtype == bool
    assert np.array_equal(sample.mask, box((64, 96), slice(8, 24), slice(70, 90)))
    assert sample.meta.image_file == "images/rrsisd/JPEGImages/00002.jpg"
    assert sample.meta.dataset == "rrsisd" and sample.meta.split is Split.TRAIN


def test_categories_id_key_wins_and_names_resolve():
    train = RRSISD(ROOT, "train")
    assert train.meta(0).category == "ship"  # categories_id 13
    assert train.meta(1).category == "airplane"  # categories_id 2 beats category_id 19
    assert train.meta(3).category == "vehicle"  # only the COCO key category_id 18
    assert RRSISD(ROOT, "test").meta(1).category == "Expressway-Service-area"  # id 0


def test_polygon_segmentation_and_grey_jpeg():
    sample = RRSISD(ROOT, "train")[3]
    assert np.array_equal(sample.mask, box((64, 64), slice(10, 30), slice(10, 40)))
    assert sample.image.shape == (64, 64, 3)
    assert np.array_equal(sample.image[..., 0], sample.image[..., 2])  # grey -> RGB


def test_uncompressed_rle_union_of_parts_and_two_polygons():
    assert np.array_equal(RRSISD(ROOT, "val")[0].mask, box((64, 64), slice(40, 60), slice(5, 15)))
    test = RRSISD(ROOT, "test")
    union = box((64, 64), slice(5, 25), slice(5, 25)) | box((64, 64), slice(15, 35), slice(15, 35))
    assert np.array_equal(test[0].mask, union)
    polygons = box((64, 64), slice(5, 15), slice(5, 15)) | box(
        (64, 64), slice(40, 50), slice(40, 60)
    )
    assert np.array_equal(test[1].mask, polygons)


def test_registry_and_open_dataset():
    assert list(DATASETS) == ["rrsisd", "refsegrs", "risbench"]
    assert DATASETS["rrsisd"] is RRSISD
    assert len(open_dataset("RRSIS-D", ROOT, "val")) == 1
    with pytest.raises(InputError, match="unknown dataset 'refcoco'; choose one of: rrsisd"):
        open_dataset("refcoco", ROOT)
    with pytest.raises(InputError, match="split 'dev' is not one of train, val, test"):
        RRSISD(ROOT, "dev")


def test_wrong_root_names_first_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        RRSISD(tmp_path)
    assert str(caught.value) == (
        f"RRSIS-D not found under {tmp_path}: missing rrsisd/refs(unc).p (expected "
        "rrsisd/refs(unc).p, rrsisd/instances.json, images/rrsisd/JPEGImages/)"
    )


def test_missing_instances_named(copy):
    (copy / INSTANCES).unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing rrsisd/instances\.json \(expected"):
        RRSISD(copy)


def test_missing_image_reported_by_name(copy):
    os.remove(copy / "images/rrsisd/JPEGImages/00003.jpg")
    with pytest.raises(DatasetNotFoundError) as caught:
        RRSISD(copy, "train")
    message = str(caught.value)
    assert "1 of 3 files listed in rrsisd/instances.json are missing" in message
    assert "the first is images/rrsisd/JPEGImages/00003.jpg" in message
    assert len(RRSISD(copy, "val")) == 1  # other splits are unaffected


def test_unsafe_refs_refused_unrun(copy, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (copy / REFS).write_bytes(pickle.dumps([Payload()], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p holds a posix\.system object"):
        RRSISD(copy)
    assert not marker.exists()


def test_rle_size_must_match_image(copy):
    def shrink(instances):
        rle = instances["annotations"][0]["segmentation"][0]
        rle["size"] = [800, 800]

    edit_instances(copy, shrink)
    dataset = RRSISD(copy)
    with pytest.raises(DatasetFormatError, match=r"annotation 101 .*RLE size \[800, 800\]"):
        dataset[0]


def test_short_rle_refused(copy):
    """pycocotools would fill a short RLE with uninitialised memory; the loader refuses it."""

    def truncate(instances):
        instances["annotations"][3]["segmentation"][0]["counts"][-1] -= 7

    edit_instances(copy, truncate)
    with pytest.raises(DatasetFormatError, match="RLE covers 4089 pixels but the image has 4096"):
        RRSISD(copy, "val")[0]


def test_unknown_split_and_missing_annotation(copy):
    edit_refs(copy, lambda refs: refs[0].update(split="testA"))
    with pytest.raises(DatasetFormatError, match="ref 1 has split 'testA'; expected train"):
        RRSISD(copy)
    edit_refs(copy, lambda refs: refs[0].update(split="train", ann_id=999))
    with pytest.raises(DatasetFormatError, match="ref 1 names ann_id 999, which .* does not hold"):
        RRSISD(copy)


def test_unknown_category_id(copy):
    edit_instances(copy, lambda inst: inst["annotations"][0].update(categories_id=42))
    with pytest.raises(DatasetFormatError, match="class id 42 is not in the categories list"):
        RRSISD(copy)
