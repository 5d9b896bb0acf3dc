"""Write synthetic referring-segmentation datasets in the three benchmarks' own layouts.

The trees are exactly those of ``DATASETS.md`` so the real loaders read them unchanged:

- RISBench: ``img_rgb/<name>.png``, ``mask/<name>.png`` (0/255), ``output_phrase_<split>.txt``
  with ``<name>.png <sentence>`` lines; names ``train_<img>_<ref>`` also appear in the val file
  (as in the real data, the prefix is not the split).
- RefSegRS: ``images/<id>.tif`` (RGB), ``masks/<id>.tif`` (0/255 with a one-pixel edge of grey
  30 on the bottom-right side, which the ``> 50`` rule must drop), ``output_phrase_<split>.txt``
  with ``<id> <sentence>`` lines; one id per sample, the image duplicated per sentence.
- RRSIS-D: ``rrsisd/refs(unc).p`` (a pickle of plain lists, dicts, strings and ints),
  ``rrsisd/instances.json`` (COCO-style, ``categories_id``, one compressed RLE per annotation,
  bbox ``[x1, y1, x2, y2]`` with x2, y2 exclusive), ``images/rrsisd/JPEGImages/<NNNNN>.jpg``.

Every image of a split comes from its own seed ``(seed, image number)``, so the same arguments
give byte-identical files.
"""

from __future__ import annotations

import enum
import io
import json
import logging
import math
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from diffris.data.synthetic.objects import Referral, SyntheticImage
from diffris.data.synthetic.scene import MIN_SIZE, generate_image
from diffris.data.synthetic.vocab import Category, category_names
from diffris.errors import InputError, OutputExistsError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: Grey value written on one side of RefSegRS mask edges; below the loaders' > 50 threshold.
REFSEGRS_EDGE_GREY = 30
JPEG_QUALITY = 95


class Layout(enum.Enum):
    """Which benchmark's on-disk layout to write."""

    RISBENCH = "risbench"
    REFSEGRS = "refsegrs"
    RRSISD = "rrsisd"


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`write_dataset` wrote.

    Attributes:
        root: the dataset root.
        layout: its layout.
        samples: sentence-mask samples per split.
        images: distinct generated images per split.
        categories: category names in id order.
        kinds: samples per expression kind (category, colour, group, size, position, relation).
        seconds: wall time of the write.
    """

    root: Path
    layout: Layout
    samples: dict[str, int]
    images: dict[str, int]
    categories: tuple[str, ...]
    kinds: dict[str, int]
    seconds: float


def split_counts(samples: int, splits: Sequence[float] | Sequence[int]) -> dict[str, int]:
    """Samples per split from three fractions (sum 1) or three counts (sum ``samples``).

    Fractions are rounded by largest remainder, so the counts always add up to ``samples``.
    """
    if samples < 1:
        raise InputError(f"samples {samples} must be at least 1")
    if len(splits) != 3 or any(v < 0 for v in splits):
        raise InputError(f"splits {tuple(splits)} must be three non-negative train/val/test values")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in splits):
        if sum(splits) != samples:
            raise InputError(f"split counts {tuple(splits)} add up to {sum(splits)}, not {samples}")
        return dict(zip(SPLITS, (int(v) for v in splits), strict=True))
    if not math.isclose(sum(splits), 1.0, abs_tol=1e-6):
        raise InputError(
            f"split fractions {tuple(splits)} add up to {sum(splits)}; use e.g. (0.7, 0.15, 0.15)"
        )
    raw = [v * samples for v in splits]
    counts = [math.floor(r) for r in raw]
    by_remainder = sorted(range(3), key=lambda k: (-(raw[k] - counts[k]), k))
    for k in by_remainder[: samples - sum(counts)]:
        counts[k] += 1
    return dict(zip(SPLITS, counts, strict=True))


class _Writer(Protocol):
    def add(
        self, split: str, number: int, image: SyntheticImage, referrals: list[Referral]
    ) -> None: ...

    def finish(self) -> None: ...


def _png(array: np.ndarray, level: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


class _RisBench:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "img_rgb").mkdir(parents=True, exist_ok=True)
        (root / "mask").mkdir(parents=True, exist_ok=True)
        self.lines: dict[str, list[str]] = {split: [] for split in SPLITS}

    def add(
        self, split: str, number: int, image: SyntheticImage, referrals: list[Referral]
    ) -> None:
        prefix = {"train": "train", "test": "test"}.get(
            split, "train" if number % 2 == 0 else "val"
        )
        picture = _png(image.image, level=1)  # textures: level 6 is 6x slower for 9% less
        for k, referral in enumerate(referrals):
            name = f"{prefix}_{number:06d}_{k}.png"
            (self.root / "img_rgb" / name).write_bytes(picture)
            mask = referral.mask.astype(np.uint8) * np.uint8(255)
            (self.root / "mask" / name).write_bytes(_png(mask))
            self.lines[split].append(f"{name} {referral.sentence}")

    def finish(self) -> None:
        for split in SPLITS:
            _write_lines(self.root / f"output_phrase_{split}.txt", self.lines[split])


class _RefSegRS:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        self.lines: dict[str, list[str]] = {split: [] for split in SPLITS}
        self.next_id = 0

    def add(
        self, split: str, number: int, image: SyntheticImage, referrals: list[Referral]
    ) -> None:
        buffer = io.BytesIO()
        Image.fromarray(image.image).save(buffer, format="TIFF")
        picture = buffer.getvalue()
        for referral in referrals:
            sample_id = self.next_id
            self.next_id += 1
            (self.root / "images" / f"{sample_id}.tif").write_bytes(picture)
            mask = referral.mask.astype(np.uint8) * np.uint8(255)
            # A faint edge to the right of and below the object, as anti-aliased masks have.
            edge = np.zeros_like(referral.mask)
            edge[:, 1:] |= referral.mask[:, :-1]
            edge[1:, :] |= referral.mask[:-1, :]
            mask[edge & ~referral.mask] = REFSEGRS_EDGE_GREY
            Image.fromarray(mask).save(self.root / "masks" / f"{sample_id}.tif", format="TIFF")
            self.lines[split].append(f"{sample_id} {referral.sentence}")

    def finish(self) -> None:
        for split in SPLITS:
            _write_lines(self.root / f"output_phrase_{split}.txt", self.lines[split])


class _RrsisD:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.images_dir = root / "images" / "rrsisd" / "JPEGImages"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        (root / "rrsisd").mkdir(parents=True, exist_ok=True)
        self.images: list[dict[str, object]] = []
        self.annotations: list[dict[str, object]] = []
        self.refs: list[dict[str, object]] = []

    def add(
        self, split: str, number: int, image: SyntheticImage, referrals: list[Referral]
    ) -> None:
        from pycocotools import mask as coco_mask

        image_id = len(self.images)
        file_name = f"{image_id:05d}.jpg"
        height, width = image.shape
        Image.fromarray(image.image).save(self.images_dir / file_name, quality=JPEG_QUALITY)
        self.images.append(
            {"id": image_id, "file_name": file_name, "height": height, "width": width}
        )
        ann_ids: dict[tuple[int, ...], int] = {}
        for referral in referrals:
            if referral.object_indices not in ann_ids:
                ann_id = len(self.annotations)
                ann_ids[referral.object_indices] = ann_id
                rle = coco_mask.encode(np.asfortranarray(referral.mask.astype(np.uint8)))
                rows, cols = np.nonzero(referral.mask)
                bbox = [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
                self.annotations.append(
                    {
                        "bbox": bbox,
                        "categories_id": referral.category.id,
                        "id": ann_id,
                        "image_id": image_id,
                        "segmentation": [
                            {"size": [height, width], "counts": rle["counts"].decode("ascii")}
                        ],
                        "area": int(rows.size),
                    }
                )
            ref_id = sent_id = len(self.refs)
            self.refs.append(
                {
                    "image_id": image_id,
                    "split": split,
                    "sentences": [
                        {
                            "tokens": referral.sentence.split(),
                            "raw": referral.sentence,
                            "sent_id": sent_id,
                            "sent": referral.sentence,
                        }
                    ],
                    "file_name": file_name,
                    "category_id": referral.category.id,
                    "ann_id": ann_ids[referral.object_indices],
                    "sent_ids": [sent_id],
                    "ref_id": ref_id,
                }
            )

    def finish(self) -> None:
        categories = [{"id": c.id, "name": c.value} for c in Category]
        instances = {
            "images": self.images,
            "annotations": self.annotations,
            "categories": categories,
        }
        (self.root / "rrsisd" / "instances.json").write_text(
            json.dumps(instances), encoding="utf-8"
        )
        (self.root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(self.refs, protocol=2))


_WRITERS: dict[Layout, type[_RisBench] | type[_RefSegRS] | type[_RrsisD]] = {
    Layout.RISBENCH: _RisBench,
    Layout.REFSEGRS: _RefSegRS,
    Layout.RRSISD: _RrsisD,
}


def generate_samples(
    counts: dict[str, int],
    *,
    size: int,
    seed: int,
    max_referrals: int,
    easy_fraction: float = 0.5,
    object_scale: float | None = None,
) -> Iterator[tuple[str, int, SyntheticImage]]:
    """The images :func:`write_dataset` writes, in order: (split, image number, image).

    Image ``number`` (0, 1, ... over all splits, train first) comes from the seed
    ``(seed, number)``; its referrals are that split's next samples.

    Args:
        counts: samples per split name (``train``, ``val``, ``test``).
        size: image side in px.
        seed: dataset seed.
        max_referrals: samples per image, at most.
        easy_fraction: share of category/colour/plural referrals (see ``generate_image``).
        object_scale: object size relative to a 512 px image (see ``generate_image``).
    """
    number = 0
    for split in SPLITS:
        remaining = counts.get(split, 0)
        while remaining > 0:
            rng = np.random.default_rng([seed, number])
            image = generate_image(
                rng,
                size,
                max_referrals=min(max_referrals, remaining),
                easy_fraction=easy_fraction,
                object_scale=object_scale,
            )
            yield split, number, image
            remaining -= len(image.referrals)
            number += 1


def write_dataset(
    root: str | Path,
    *,
    layout: Layout | str,
    samples: int,
    splits: Sequence[float] | Sequence[int] = (0.7, 0.15, 0.15),
    size: int = 512,
    seed: int = 0,
    max_referrals: int = 4,
    easy_fraction: float = 0.5,
    object_scale: float | None = None,
    overwrite: bool = False,
) -> DatasetSummary:
    """Generate ``samples`` sentence-mask pairs and write them in a benchmark's layout.

    Each generated image gives up to ``max_referrals`` samples (different targets) and all of an
    image's samples go to the same split, so no image is shared between splits.

    Args:
        root: dataset root folder (created).
        layout: which benchmark's layout (``risbench``, ``refsegrs``, ``rrsisd``).
        samples: total number of sentence-mask samples over all splits.
        splits: train/val/test fractions (summing to 1) or counts (summing to ``samples``).
        size: image side in px.
        seed: the same seed writes byte-identical files.
        max_referrals: samples per generated image, at most.
        easy_fraction: probability that a referral names a category or colour (easy) rather
            than a size, position or relation (hard), when the image allows both.
        object_scale: object size relative to a 512 px reference image; None = ``size / 512``
            (objects shrink with the image), 1.0 = native size (like tiles of a large scene).
        overwrite: write into a non-empty ``root`` (files of the same names are replaced).

    Returns:
        Counts per split and per expression kind.

    Raises:
        InputError: a bad layout, count, split or size.
        OutputExistsError: ``root`` is not empty and ``overwrite`` is false.
    """
    started = time.perf_counter()
    try:
        layout = Layout(layout)
    except ValueError as err:
        valid = ", ".join(member.value for member in Layout)
        raise InputError(f"unknown dataset layout {layout!r}; choose one of: {valid}") from err
    counts = split_counts(samples, splits)
    if size < MIN_SIZE:
        raise InputError(f"image size {size} px is too small; use at least {MIN_SIZE}, e.g. 512")
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())) and not overwrite:
        raise OutputExistsError(f"{root} exists and is not empty; pass overwrite to write into it")
    writer = _WRITERS[layout](root)
    images = dict.fromkeys(SPLITS, 0)
    kinds: dict[str, int] = {}
    for split, number, image in generate_samples(
        counts,
        size=size,
        seed=seed,
        max_referrals=max_referrals,
        easy_fraction=easy_fraction,
        object_scale=object_scale,
    ):
        writer.add(split, number, image, image.referrals)
        for referral in image.referrals:
            kind = referral.expression.kind.value
            kinds[kind] = kinds.get(kind, 0) + 1
        images[split] += 1
        if (number + 1) % 100 == 0:
            logger.info("generated %d images (%s split)", number + 1, split)
    writer.finish()
    seconds = time.perf_counter() - started
    total = sum(images.values())
    logger.info("wrote %d samples from %d images to %s in %.1f s", samples, total, root, seconds)
    return DatasetSummary(
        root=root,
        layout=layout,
        samples=counts,
        images=images,
        categories=category_names(),
        kinds=dict(sorted(kinds.items())),
        seconds=seconds,
    )
