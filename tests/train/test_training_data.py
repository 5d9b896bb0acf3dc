"""Which dataset a run reads: synthetic folders of every layout, and distinct images."""

from pathlib import Path

import pytest

from diffris.errors import DatasetNotFoundError
from diffris.train.data import open_split, synthetic_layout
from diffris.train.latents import distinct_images
from tests.train.helpers import write_small_dataset


@pytest.mark.parametrize("layout", ["risbench", "refsegrs", "rrsisd"])
def test_synthetic_folders_of_every_layout_are_recognised(tmp_path: Path, layout: str) -> None:
    root = write_small_dataset(tmp_path / layout, layout=layout)
    assert synthetic_layout(root) == layout
    train = open_split("synthetic", root, "train")
    assert len(train) == 16 and len(open_split("synthetic", root, "val")) == 4
    representatives, rows = distinct_images(train)
    files = [train.meta(i).image_file for i in range(len(train))]
    assert len(representatives) == len(set(files))
    assert [files[representatives[int(r)]] for r in rows] == files
    if layout == "rrsisd":  # sentences share images there
        assert len(representatives) < len(train)


def test_a_root_without_a_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"no synthetic dataset under .*img_rgb/"):
        open_split("synthetic", tmp_path, "train")
    with pytest.raises(DatasetNotFoundError, match="RISBench not found under .*missing img_rgb/"):
        open_split("risbench", tmp_path, "train")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        open_split("risbench", tmp_path / "nowhere", "train")
