"""ResizeToModel and collate: shapes, ranges, resampling, and no augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffris.data.base import Sample, SampleMeta, Split
from diffris.data.risbench import RISBench
from diffris.data.transforms import ResizeToModel, collate
from diffris.errors import InputError

RISBENCH = Path(__file__).parent / "risbench"


def make_sample(height: int = 48, width: int = 80, index: int = 3) -> Sample:
    """Left third black, rest white; the mask is the left quarter: any flip would show."""
    image = np.full((height, width, 3), 255, np.uint8)
    image[:, : width // 3] = 0
    mask = np.zeros((height, width), bool)
    mask[:, : width // 4] = True
    meta = SampleMeta("risbench", Split.VAL, "val/x", "img_rgb/x.png", None, index)
    return Sample(image=image, mask=mask, sentence="the dark field on the left", meta=meta)


def test_shapes_dtypes_ranges():
    out = ResizeToModel(64)(make_sample())
    assert set(out) == {"pixels", "mask", "sentence", "index"}
    assert out["pixels"].shape == (3, 64, 64) and out["pixels"].dtype == torch.float32
    assert out["mask"].shape == (1, 64, 64) and out["mask"].dtype == torch.float32
    assert out["pixels"].min() == -1.0 and out["pixels"].max() == 1.0
    assert set(out["mask"].unique().tolist()) == {0.0, 1.0}
    assert out["sentence"] == "the dark field on the left"
    assert out["index"] == 3


def test_no_flip_orientation_kept_and_deterministic():
    transform = ResizeToModel(64)
    sample = make_sample()
    first, second = transform(sample), transform(sample)
    assert torch.equal(first["pixels"], second["pixels"])
    assert (first["pixels"][:, :, :10] == -1.0).all()  # dark stays on the left
    assert (first["pixels"][:, :, -10:] == 1.0).all()
    assert first["mask"][0, :, :8].all() and not first["mask"][0, :, 24:].any()


def test_mask_nearest_no_new_values():
    rng = np.random.default_rng(0)
    sample = make_sample()
    mask = rng.random((48, 80)) > 0.5
    sample = Sample(sample.image, mask, sample.sentence, sample.meta)
    out = ResizeToModel(64)(sample)["mask"][0].numpy()
    expected = np.asarray(
        Image.fromarray(mask.astype(np.uint8)).resize((64, 64), Image.Resampling.NEAREST)
    )
    assert np.array_equal(out, expected.astype(np.float32))  # 48 -> 64, 80 -> 64: no ties


def test_image_bilinear():
    image = np.zeros((2, 2, 3), np.uint8)
    image[:, 1] = 255  # left black, right white
    sample = make_sample()
    sample = Sample(image, np.zeros((2, 2), bool), sample.sentence, sample.meta)
    pixels = ResizeToModel(64)(sample)["pixels"]
    expected = np.asarray(Image.fromarray(image).resize((64, 64), Image.Resampling.BILINEAR))
    assert torch.equal(pixels, torch.from_numpy(expected.copy()).permute(2, 0, 1) / 127.5 - 1.0)
    row = pixels[0, 0]
    assert (row[1:] >= row[:-1]).all()  # a ramp from black to white...
    assert ((row > -1) & (row < 1)).sum() > 2  # ...with intermediate values (not nearest)


def test_original_mask_only_when_asked():
    sample = make_sample()
    assert "original_mask" not in ResizeToModel(64)(sample)
    out = ResizeToModel(64, keep_original_mask=True)(sample)
    assert out["original_mask"].dtype == torch.bool
    assert np.array_equal(out["original_mask"].numpy(), sample.mask)


@pytest.mark.parametrize("size", [0, 100, 500])
def test_size_must_be_multiple_of_64(size):
    with pytest.raises(InputError, match="multiple of 64"):
        ResizeToModel(size)


def test_collate_with_dataloader():
    dataset = RISBench(RISBENCH, "train", transforms=ResizeToModel(64, keep_original_mask=True))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["pixels"].shape == (2, 3, 64, 64)
    assert batch["mask"].shape == (2, 1, 64, 64)
    assert batch["index"].tolist() == [0, 1]
    assert batch["sentence"] == [dataset.records[0].sentence, dataset.records[1].sentence]
    assert isinstance(batch["original_mask"], list) and batch["original_mask"][0].shape == (64, 64)
    assert [len(b["sentence"]) for b in loader] == [2, 1]
