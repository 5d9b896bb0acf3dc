"""RefSegRS loader on the tiny tree of tests/data/refsegrs (see its data.py for what is where)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffris.data.phrases import CategoryMatcher
from diffris.data.refsegrs import RefSegRS
from diffris.errors import DatasetFormatError, DatasetNotFoundError

ROOT = Path(__file__).parent / "refsegrs"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "RefSegRS"
    shutil.copytree(ROOT, root)
    return root


def test_sample_counts_per_split():
    assert [len(RefSegRS(ROOT, split)) for split in ("train", "val", "test")] == [3, 2, 2]


def test_bare_integer_ids_and_paths():
    train = RefSegRS(ROOT, "train")
    assert [train.meta(i).sample_id for i in range(3)] == ["train/0", "train/17", "train/105"]
    assert train.records[1].image_file == "images/17.tif"
    assert train.records[1].mask_file == "masks/17.tif"
    assert train[1].meta.image_file == "images/17.tif"


def test_crlf_stripped_and_blank_line_skipped():
    assert (ROOT / "output_phrase_train.txt").read_bytes().endswith(b"road\r\n\r\n")
    train = RefSegRS(ROOT, "train")
    assert train[2].sentence == "buildings along the road"
    assert len(train) == 3


def test_mask_binarised_above_50():
    """Grey 30 (rows 0:8) stays False, the 200 object is True."""
    raw = np.asarray(Image.open(ROOT / "masks" / "17.tif"))
    assert set(np.unique(raw)) == {0, 30, 200}
    sample = RefSegRS(ROOT, "train")[1]
    assert sample.mask.dtype == bool and sample.mask.shape == (64, 64)
    assert np.array_equal(sample.mask, raw == 200)
    assert sample.mask.sum() == 10 * 20


def test_rgb_mask_and_grey_image():
    rgb_mask = RefSegRS(ROOT, "train")[2]  # masks/105.tif has three bands
    assert rgb_mask.mask.sum() == 40 * 20 and not rgb_mask.mask[:8].any()
    grey = RefSegRS(ROOT, "test")[0]  # images/42.tif has one band
    assert grey.image.shape == (64, 64, 3) and grey.image.dtype == np.uint8
    assert np.array_equal(grey.image[..., 0], grey.image[..., 1])


def test_repeated_id_gets_unique_sample_id():
    val = RefSegRS(ROOT, "val")
    assert [val.meta(0).sample_id, val.meta(1).sample_id] == ["val/3", "val/3#2"]
    assert np.array_equal(val[0].mask, val[1].mask)
    assert val[1].sentence == "the green strip at the bottom"


def test_category_inferred_from_sentence():
    train, val, test = (RefSegRS(ROOT, split) for split in ("train", "val", "test"))
    assert train.meta(0).category == "road marking"  # longest match before "road"
    assert train.meta(1).category == "car"  # earliest match: "car ... building"
    assert train.meta(2).category == "building"  # plural
    assert val.meta(0).category == "low vegetation"
    assert val.meta(1).category is None  # no class name in the sentence
    assert test.meta(1).category == "tree"


def test_category_matcher_whole_words():
    infer = CategoryMatcher(RefSegRS.categories)
    assert infer("two BUSES  and a road\tmarking") == "bus"
    assert infer("the caravan near the carpark") is None  # no 'van'/'car' inside words
    assert infer("impervious surfaces beside the sidewalk") == "impervious surface"


def test_wrong_root_names_first_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        RefSegRS(tmp_path, "test")
    assert str(caught.value) == (
        f"RefSegRS not found under {tmp_path}: missing images/ "
        "(expected images/, masks/, output_phrase_{train,val,test}.txt)"
    )


def test_missing_phrase_file_named(copy):
    (copy / "output_phrase_test.txt").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        RefSegRS(copy, "test")
    assert str(caught.value) == (
        f"RefSegRS not found under {copy}: missing output_phrase_test.txt "
        "(expected images/, masks/, output_phrase_{train,val,test}.txt)"
    )
    assert len(RefSegRS(copy, "val")) == 2


def test_missing_mask_reported_by_name(copy):
    os.remove(copy / "masks" / "105.tif")
    os.remove(copy / "images" / "0.tif")
    with pytest.raises(DatasetNotFoundError) as caught:
        RefSegRS(copy, "train")
    message = str(caught.value)
    assert "2 of 6 files listed in output_phrase_train.txt are missing" in message
    assert "the first is images/0.tif" in message


def test_malformed_line_named(copy):
    with (copy / "output_phrase_val.txt").open("a") as file:
        file.write("77\n")
    with pytest.raises(DatasetFormatError) as caught:
        RefSegRS(copy, "val")
    assert str(caught.value) == (
        f"{copy / 'output_phrase_val.txt'} line 3: '77' has no sentence; expected '<id> <sentence>'"
    )


def test_id_with_extension_refused(copy):
    (copy / "output_phrase_test.txt").write_text("42.tif the truck\n")
    with pytest.raises(DatasetFormatError, match=r"line 1: id '42\.tif' is not a bare integer"):
        RefSegRS(copy, "test")


def test_mask_size_must_match_image(copy):
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(copy / "masks" / "42.tif")
    dataset = RefSegRS(copy, "test")
    with pytest.raises(DatasetFormatError, match=r"masks/42\.tif is 32x64 px but image"):
        dataset[0]
