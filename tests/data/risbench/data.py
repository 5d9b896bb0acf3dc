#!/usr/bin/env python3
"""Write a tiny RISBench tree next to this script, in the real layout (torchgeo style).

    img_rgb/<name>.png, mask/<name>.png (grayscale), output_phrase_{train,val,test}.txt

Seeded and deterministic; the output is committed, so tests do not run this. Re-run it after
changing it: ``python tests/data/risbench/data.py``. 64x64 px instead of 512. What it exercises
(tests/data/test_risbench.py asserts these facts):

- val lines use ``train_`` names (the split is the file, not the prefix);
- every mask: background 0, a band of grey 30 (rows 0:8, must stay False), the object 200;
- train_0002_1 has a tiny object (3x4 px); its image is RGBA;
- mask test_0004_1 is stored as RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

#: name -> (object rows, object cols)
OBJECTS = {
    "train_0001_1": (slice(10, 30), slice(10, 30)),
    "train_0001_2": (slice(40, 60), slice(35, 60)),
    "train_0002_1": (slice(30, 33), slice(30, 34)),
    "train_0107_1": (slice(20, 50), slice(5, 25)),
    "train_0107_2": (slice(20, 50), slice(40, 60)),
    "test_0003_1": (slice(12, 52), slice(12, 52)),
    "test_0004_1": (slice(50, 64), slice(0, 64)),
}
PHRASES = {
    "train": [
        (
            "train_0001_1",
            "The storage tank located at the upper left of the image, next to a "
            "second storage tank",
        ),
        ("train_0001_2", "The tennis court at the bottom right, south-east of the storage tank"),
        ("train_0002_1", "A small vehicle in the centre of the image, parked beside the road"),
    ],
    "val": [
        ("train_0107_1", "The ground track field on the left side of the image"),
        ("train_0107_2", "The soccer ball field on the right, inside the ground track field"),
    ],
    "test": [
        ("test_0003_1", "The large roundabout in the middle of the image"),
        ("test_0004_1", "The bridge crossing the bottom of the image from left to right"),
    ],
}


def main() -> None:
    rng = np.random.default_rng(0)
    (HERE / "img_rgb").mkdir(exist_ok=True)
    (HERE / "mask").mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:64, 0:64]
    for name, (rows, cols) in OBJECTS.items():
        mask = np.zeros((64, 64), np.uint8)
        mask[0:8, :] = 30  # grey below the > 50 threshold
        mask[rows, cols] = 200
        pixels = np.stack([yy * 3, 128 + 0 * xx, xx * 3], axis=2).astype(np.float64)
        pixels += (mask == 200)[:, :, None] * 50 + rng.normal(0, 2, (64, 64, 1))
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
        if name == "train_0002_1":
            alpha = np.full((64, 64, 1), 255, np.uint8)
            Image.fromarray(np.concatenate([pixels, alpha], axis=2), mode="RGBA").save(
                HERE / "img_rgb" / f"{name}.png"
            )
        else:
            Image.fromarray(pixels).save(HERE / "img_rgb" / f"{name}.png")
        if name == "test_0004_1":
            Image.fromarray(np.repeat(mask[:, :, None], 3, axis=2)).save(
                HERE / "mask" / f"{name}.png"
            )
        else:
            Image.fromarray(mask, mode="L").save(HERE / "mask" / f"{name}.png")
    for split, lines in PHRASES.items():
        text = "".join(f"{name}.png {sentence}\n" for name, sentence in lines)
        (HERE / f"output_phrase_{split}.txt").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
