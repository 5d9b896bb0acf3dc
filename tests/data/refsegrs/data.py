#!/usr/bin/env python3
"""Write a tiny RefSegRS tree next to this script, in the real layout (torchgeo style).

    images/<id>.tif (RGB), masks/<id>.tif (one band), output_phrase_{train,val,test}.txt

Seeded and deterministic; the output is committed, so tests do not run this. Re-run it after
changing it: ``python tests/data/refsegrs/data.py``. 64x64 px instead of 512. What it exercises
(tests/data/test_refsegrs.py asserts these facts):

- ids are bare integers (0, 17, 105, 3, 42, 1000); id 3 has two lines in val (two sentences);
- every mask: background 0, a band of grey 30 (rows 0:8, must stay False), the object 200;
- mask 105 is stored as a three-band (RGB) TIFF, image 42 as a one-band (grey) TIFF;
- output_phrase_train.txt has Windows line endings and a trailing blank line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

#: id -> (object rows, object cols)
OBJECTS = {
    0: (slice(20, 40), slice(0, 64)),
    17: (slice(30, 40), slice(30, 50)),
    105: (slice(10, 50), slice(10, 30)),
    3: (slice(50, 60), slice(10, 60)),
    42: (slice(16, 48), slice(16, 48)),
    1000: (slice(40, 64), slice(0, 20)),
}
PHRASES = {
    "train": [
        (0, "the road marking across the middle of the road"),
        (17, "car parked near the building"),
        (105, "buildings along the road"),
    ],
    "val": [(3, "low vegetation between the roads"), (3, "the green strip at the bottom")],
    "test": [(42, "the truck in the centre"), (1000, "a tree at the bottom left")],
}


def main() -> None:
    rng = np.random.default_rng(0)
    (HERE / "images").mkdir(exist_ok=True)
    (HERE / "masks").mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:64, 0:64]
    for sample_id, (rows, cols) in OBJECTS.items():
        mask = np.zeros((64, 64), np.uint8)
        mask[0:8, :] = 30  # grey below the > 50 threshold
        mask[rows, cols] = 200
        pixels = np.stack([xx * 3, yy * 3, 255 - xx * 3], axis=2).astype(np.float64)
        pixels += (mask == 200)[:, :, None] * 40 + rng.normal(0, 2, (64, 64, 1))
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
        if sample_id == 42:
            Image.fromarray(pixels[:, :, 1], mode="L").save(
                HERE / "images" / f"{sample_id}.tif", compression="tiff_lzw"
            )
        else:
            Image.fromarray(pixels).save(
                HERE / "images" / f"{sample_id}.tif", compression="tiff_lzw"
            )
        if sample_id == 105:
            Image.fromarray(np.repeat(mask[:, :, None], 3, axis=2)).save(
                HERE / "masks" / f"{sample_id}.tif", compression="tiff_lzw"
            )
        else:
            Image.fromarray(mask, mode="L").save(
                HERE / "masks" / f"{sample_id}.tif", compression="tiff_lzw"
            )
    for split, lines in PHRASES.items():
        newline = "\r\n" if split == "train" else "\n"
        text = "".join(f"{sample_id} {sentence}{newline}" for sample_id, sentence in lines)
        if split == "train":
            text += newline
        (HERE / f"output_phrase_{split}.txt").write_bytes(text.encode("utf-8"))


if __name__ == "__main__":
    main()
