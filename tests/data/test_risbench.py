"""RISBench loader on the tiny tree of tests/data/risbench (see its data.py for what is where)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffris.data.base import DatasetFormatError, Split
from diffris.data.risbench import RISBench
from diffris.errors import DatasetNotFoundError

ROOT = Path(__file__).parent / "risbench"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "RISBench"
    shutil.copytree(ROOT, root)
    return root


def test_sample_counts_per_split():
    assert [len(RISBench(ROOT, split)) for split in ("train", "val", "test")] == [3, 2, 2]


def test_val_lines_with_train_names_land_in_val():
    val = RISBench(ROOT, "val")
    assert [val.meta(i).sample_id for i in range(2)] == ["val/train_0107_1", "val/train_0107_2"]
    assert all(val.meta(i).split is Split.VAL for i in range(2))
    assert val[0].meta.image_file == "img_rgb/train_0107_1.png"
    train_ids = {RISBench(ROOT, "train").meta(i).sample_id for i in range(3)}
    assert not train_ids & {val.meta(i).sample_id for i in range(2)}


def test_mask_binarised_above_50():
    raw = np.asarray(Image.open(ROOT / "mask" / "train_0001_1.png"))
    assert set(np.unique(raw)) == {0, 30, 200}
    sample = RISBench(ROOT, "train")[0]
    assert sample.mask.dtype == bool and sample.mask.shape == (64, 64)
    assert np.array_equal(sample.mask, raw == 200)


def test_tiny_object_rgba_image_and_rgb_mask():
    tiny = RISBench(ROOT, "train")[2]  # RGBA image, 3x4 px object
    assert tiny.image.shape == (64, 64, 3) and tiny.image.dtype == np.uint8
    assert tiny.mask.sum() == 12 and tiny.mask[30:33, 30:34].all()
    rgb_mask = RISBench(ROOT, "test")[1]  # mask stored as RGB
    assert rgb_mask.mask.sum() == 14 * 64 and not rgb_mask.mask[:50].any()


def test_long_sentences_kept_whole_and_categories_inferred():
    train = RISBench(ROOT, "train")
    assert train[0].sentence == (
        "The storage tank located at the upper left of the image, next to a second storage tank"
    )
    assert [train.meta(i).category for i in range(3)] == ["storage tank", "tennis court", "vehicle"]
    val = RISBench(ROOT, "val")
    assert val.meta(0).category == "ground track field"
    assert val.meta(1).category == "soccer ball field"  # earliest, not "ground track field"


def test_wrong_root_names_first_missing_file(tmp_path):
    (tmp_path / "img_rgb").mkdir()
    with pytest.raises(DatasetNotFoundError) as caught:
        RISBench(tmp_path)
    assert str(caught.value) == (
        f"RISBench not found under {tmp_path}: missing mask/ "
        "(expected img_rgb/, mask/, output_phrase_{train,val,test}.txt)"
    )


def test_missing_image_reported_by_name(copy):
    os.remove(copy / "img_rgb" / "train_0107_2.png")
    with pytest.raises(DatasetNotFoundError) as caught:
        RISBench(copy, "val")
    message = str(caught.value)
    assert f"RISBench under {copy} is incomplete" in message
    assert "1 of 4 files listed in output_phrase_val.txt are missing" in message
    assert "the first is img_rgb/train_0107_2.png" in message


def test_malformed_line_named(copy):
    path = copy / "output_phrase_train.txt"
    path.write_text(path.read_text() + "train_0009_1.png   \n")
    with pytest.raises(DatasetFormatError) as caught:
        RISBench(copy, "train")
    assert str(caught.value) == (
        f"{path} line 4: 'train_0009_1.png' has no sentence; expected '<name>.png <sentence>'"
    )


def test_only_newlines_end_lines(copy):
    path = copy / "output_phrase_test.txt"
    path.write_text("test_0003_1.png the round\u2028about\r\ntest_0004_1.png the bridge\n")
    test = RISBench(copy, "test")
    assert len(test) == 2 and test[0].sentence == "the round\u2028about"


def test_name_without_png_refused(copy):
    (copy / "output_phrase_test.txt").write_text("test_0003_1 the roundabout\n")
    with pytest.raises(DatasetFormatError, match=r"line 1: 'test_0003_1' is not a \.png file"):
        RISBench(copy, "test")


def test_empty_phrase_file_refused(copy):
    (copy / "output_phrase_test.txt").write_text("\n\n")
    with pytest.raises(DatasetFormatError, match="lists no samples"):
        RISBench(copy, "test")


def test_unreadable_image_named(copy):
    (copy / "img_rgb" / "test_0003_1.png").write_bytes(b"not a png")
    dataset = RISBench(copy, "test")
    with pytest.raises(DatasetFormatError, match=r"test_0003_1\.png is not a readable image"):
        dataset[0]


def test_indexing_and_iteration():
    test = RISBench(ROOT, "test")
    assert test[-1].meta.sample_id == "test/test_0004_1"
    assert test[-1].meta.index == 1
    assert [s.meta.index for s in test] == [0, 1]
    with pytest.raises(IndexError):
        test[2]
