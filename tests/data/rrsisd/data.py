#!/usr/bin/env python3
"""Write a tiny RRSIS-D tree next to this script, in the real layout (torchgeo style).

    rrsisd/refs(unc).p, rrsisd/instances.json, images/rrsisd/JPEGImages/0000N.jpg

Seeded and deterministic; the output is committed, so tests do not run this. Re-run it after
changing it: ``python tests/data/rrsisd/data.py``. Images are 64 px (not 800) with RLE sizes to
match. What each ref exercises (tests/data/test_rrsisd.py asserts these facts):

    ref 1  train  00001.jpg 64x64   compressed RLE, rows 10:30 x cols 20:50, categories_id 13
    ref 2  train  00002.jpg 64x96   compressed RLE, rows 8:24 x cols 70:90; two sentences;
                                    both categories_id 2 and category_id 19 (categories_id wins)
    ref 3  train  00003.jpg 64x64   grayscale JPEG; polygon, x 10..40, y 10..30; category_id 18
                                    only (the COCO key)
    ref 4  val    00004.jpg 64x64   uncompressed RLE (counts list), rows 40:60 x cols 5:15
    ref 5  test   00005.jpg 64x64   two overlapping compressed RLEs -> their union
    ref 6  test   00006.jpg 64x64   two polygons in one segmentation
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco

HERE = Path(__file__).resolve().parent
CATEGORIES = [
    "Expressway-Service-area",
    "Expressway-toll-station",
    "airplane",
    "airport",
    "baseballfield",
    "basketballcourt",
    "bridge",
    "chimney",
    "dam",
    "golffield",
    "groundtrackfield",
    "harbor",
    "overpass",
    "ship",
    "stadium",
    "storagetank",
    "tenniscourt",
    "trainstation",
    "vehicle",
    "windmill",
]


def box(height: int, width: int, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[rows, cols] = 1
    return mask


def compressed(mask: np.ndarray) -> dict:
    rle = coco.encode(np.asfortranarray(mask))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def uncompressed(mask: np.ndarray) -> dict:
    """COCO's list form: run lengths over the column-major pixels, starting with background."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def image(rng: np.random.Generator, height: int, width: int, mask: np.ndarray) -> np.ndarray:
    """A smooth gradient with the object brighter, plus a little noise (JPEG-friendly)."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 2, yy * 2, (xx + yy)], axis=2).astype(np.float64) + 40
    base += mask[:, :, None] * 80 + rng.normal(0, 3, (height, width, 1))
    return np.clip(base, 0, 255).astype(np.uint8)


def sentence(sent_id: int, raw: str) -> dict:
    return {"tokens": raw.lower().split(), "raw": raw, "sent_id": sent_id, "sent": raw.lower()}


def main() -> None:
    rng = np.random.default_rng(0)
    images_dir = HERE / "images" / "rrsisd" / "JPEGImages"
    images_dir.mkdir(parents=True, exist_ok=True)
    (HERE / "rrsisd").mkdir(exist_ok=True)

    m1 = box(64, 64, slice(10, 30), slice(20, 50))
    m2 = box(64, 96, slice(8, 24), slice(70, 90))
    m3 = np.zeros((64, 64), np.uint8)  # drawn by the polygon; only used to brighten the image
    m3[10:30, 10:40] = 1
    m4 = box(64, 64, slice(40, 60), slice(5, 15))
    m5a, m5b = box(64, 64, slice(5, 25), slice(5, 25)), box(64, 64, slice(15, 35), slice(15, 35))
    m6 = box(64, 64, slice(5, 15), slice(5, 15)) | box(64, 64, slice(40, 50), slice(40, 60))

    # (ref_id, image_id, split, (height, width), object mask, segmentation, class keys, sentences)
    table = [
        (
            1,
            1,
            "train",
            (64, 64),
            m1,
            [compressed(m1)],
            {"categories_id": 13},
            [sentence(1, "The ship on the left")],
        ),
        (
            2,
            2,
            "train",
            (64, 96),
            m2,
            [compressed(m2)],
            {"categories_id": 2, "category_id": 19},
            [
                sentence(2, "The airplane at the top right"),
                sentence(3, "A plane near the right edge"),
            ],
        ),
        (
            3,
            3,
            "train",
            (64, 64),
            m3,
            [[10, 10, 40, 10, 40, 30, 10, 30]],
            {"category_id": 18},
            [sentence(4, "The vehicle in the upper left")],
        ),
        (
            4,
            4,
            "val",
            (64, 64),
            m4,
            [uncompressed(m4)],
            {"categories_id": 6},
            [sentence(5, "The bridge at the bottom left")],
        ),
        (
            5,
            5,
            "test",
            (64, 64),
            m5a | m5b,
            [compressed(m5a), compressed(m5b)],
            {"categories_id": 15},
            [sentence(6, "The two storage tanks at the top")],
        ),
        (
            6,
            6,
            "test",
            (64, 64),
            m6,
            [[5, 5, 15, 5, 15, 15, 5, 15], [40, 40, 60, 40, 60, 50, 40, 50]],
            {"categories_id": 0},
            [sentence(7, "The service area")],
        ),
    ]

    refs, images, annotations = [], [], []
    for ref_id, image_id, split, (h, w), mask, segmentation, keys, sentences in table:
        file_name = f"{image_id:05d}.jpg"
        pixels = image(rng, h, w, mask)
        if image_id == 3:
            Image.fromarray(pixels[:, :, 0], mode="L").save(images_dir / file_name, quality=90)
        else:
            Image.fromarray(pixels).save(images_dir / file_name, quality=90)
        ann_id = 100 + ref_id
        ys, xs = np.nonzero(mask)
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        annotations.append(
            {
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())],
                **keys,
                "id": ann_id,
                "image_id": image_id,
                "segmentation": segmentation,
                "area": 12345.0,  # not a pixel count in the real file either
            }
        )
        refs.append(
            {
                "image_id": image_id,
                "split": split,
                "sentences": sentences,
                "file_name": file_name,
                "category_id": keys.get("categories_id", keys.get("category_id")),
                "ann_id": ann_id,
                "sent_ids": [s["sent_id"] for s in sentences],
                "ref_id": ref_id,
            }
        )
    instances = {
        "info": {"description": "tiny RRSIS-D fixture"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for i, name in enumerate(CATEGORIES)],
    }
    (HERE / "rrsisd" / "instances.json").write_text(json.dumps(instances, indent=1) + "\n")
    with (HERE / "rrsisd" / "refs(unc).p").open("wb") as file:
        pickle.dump(refs, file, protocol=2)


if __name__ == "__main__":
    main()
