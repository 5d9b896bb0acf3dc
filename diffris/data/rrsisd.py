"""RRSIS-D: 17,402 image-sentence-mask triplets, 800x800 JPEG, 20 classes.

Layout::

    <root>/rrsisd/refs(unc).p                 pickle: a list of refs (read without running code)
    <root>/rrsisd/instances.json              COCO style: images, annotations, categories
    <root>/images/rrsisd/JPEGImages/<file_name>

A ref is ``{image_id, split, sentences, file_name, category_id, ann_id, sent_ids, ref_id}`` and
each of its ``sentences`` (``{tokens, raw, sent_id, sent}``) is one sample; the split is the ref's
``split``. The mask is the ref's annotation (``ann_id``) in ``instances.json``, whose class key is
``categories_id`` (``category_id`` is accepted too). Segmentations may be compressed RLE (what
RRSIS-D ships), uncompressed RLE or polygons; ``area`` is ignored.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from diffris.data.base import DatasetFormatError, Record, ReferringDataset, Split
from diffris.data.safe_pickle import safe_load
from diffris.messages import cut

REFS = "rrsisd/refs(unc).p"
INSTANCES = "rrsisd/instances.json"
IMAGES = "images/rrsisd/JPEGImages"


class RRSISD(ReferringDataset):
    """The RRSIS-D benchmark (see the module docstring for the layout).

    Sample ids are ``<ref_id>_<sent_id>``. The sentence is the ``raw`` text (what the reference
    loaders feed the text encoder), or ``sent`` when a sentence has no ``raw``. The image is the
    ``file_name`` of the ref's ``image_id`` in ``instances.json`` (as the reference ``refer.py``
    does; the ref's own ``file_name`` is not used). Categories come from the annotation's class id
    and the ``categories`` list of ``instances.json``. A segmentation of several parts is their
    union (the reference sums the parts and keeps pixels equal to 1, which would drop overlaps).

    Checked when the dataset is built: both annotation files exist and parse (the pickle with the
    restricted unpickler), every ref has a known split, names an annotation and an image that
    ``instances.json`` holds, a known class and a sentence, sample ids are unique, and every image
    of the split exists. Checked when a sample is read: the RLE size and pixel count match the
    image, and polygons are well formed.
    """

    name = "rrsisd"
    title = "RRSIS-D"
    layout = f"{REFS}, {INSTANCES}, {IMAGES}/"
    categories: ClassVar[tuple[str, ...]] = (
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
    )

    #: annotation id -> segmentation, for this split's refs only (filled by ``_index``).
    _segmentations: dict[Any, Any]

    def _required(self) -> list[str]:
        return [REFS, INSTANCES, f"{IMAGES}/"]

    def _listing(self) -> str:
        return INSTANCES

    def _index(self) -> list[Record]:
        refs_path, instances_path = self.root / REFS, self.root / INSTANCES
        refs = safe_load(refs_path)
        if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
            raise DatasetFormatError(
                f"{refs_path} holds a {type(refs).__name__}; expected a list of dicts"
            )
        images, annotations, class_names = _read_instances(instances_path)
        self._segmentations = {}
        records: list[Record] = []
        for ref in refs:
            ref_id = _get(ref, "ref_id", refs_path, "a ref")
            where = f"{refs_path}: ref {cut(ref_id)}"
            split = _get(ref, "split", refs_path, f"ref {cut(ref_id)}")
            if split not in {member.value for member in Split}:
                raise DatasetFormatError(
                    f"{where} has split {cut(split)}; expected train, val or test"
                )
            if split != self.split.value:
                continue
            ann_id = _get(ref, "ann_id", refs_path, f"ref {cut(ref_id)}")
            annotation = annotations.get(ann_id)
            if annotation is None:
                raise DatasetFormatError(
                    f"{where} names ann_id {cut(ann_id)}, which {instances_path} does not hold"
                )
            image_id = ref.get("image_id", annotation.get("image_id"))
            if image_id not in images:
                raise DatasetFormatError(
                    f"{where} names image_id {cut(image_id)}, which {instances_path} does not hold"
                )
            if annotation.get("image_id", image_id) != image_id:
                raise DatasetFormatError(
                    f"{where} is on image {cut(image_id)} but its annotation {cut(ann_id)} is on image "
                    f"{cut(annotation['image_id'])}"
                )
            category = _category(annotation, ref, class_names, where)
            self._segmentations[ann_id] = _get(
                annotation, "segmentation", instances_path, f"annotation {ann_id}"
            )
            image_file = f"{IMAGES}/{images[image_id]}"
            for sample_id, sentence in _sentences(ref, where):
                records.append(Record(sample_id, sentence, image_file, None, category, ann_id))
        seen: set[str] = set()
        for record in records:
            if record.sample_id in seen:
                raise DatasetFormatError(
                    f"{refs_path} lists sample {record.sample_id} twice (ref_id_sent_id)"
                )
            seen.add(record.sample_id)
        if not records:
            raise DatasetFormatError(f"{refs_path} has no ref in the {self.split} split")
        return records

    def _read_mask(self, record: Record, shape: tuple[int, int]) -> np.ndarray:
        where = f"{self.root / INSTANCES} annotation {cut(record.annotation)} (image {record.image_file})"
        return decode_segmentation(self._segmentations[record.annotation], shape, where=where)


def _get(mapping: dict[str, Any], key: str, path: Path, what: str) -> Any:
    if key not in mapping:
        raise DatasetFormatError(f"{path}: {what} has no {key!r} field")
    return mapping[key]


def _read_instances(path: Path) -> tuple[dict[Any, str], dict[Any, dict[str, Any]], dict[Any, str]]:
    """(image id -> file name, annotation id -> annotation, class id -> class name)."""
    try:
        with path.open(encoding="utf-8") as file:
            instances = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetFormatError(f"{path} is not valid JSON: {err}") from err
    except RecursionError as err:
        raise DatasetFormatError(f"{path} is nested too deeply to be COCO annotations") from err
    if not isinstance(instances, dict):
        raise DatasetFormatError(
            f"{path} holds a {type(instances).__name__}; expected a COCO-style object"
        )
    tables = []
    for key in ("images", "annotations", "categories"):
        entries = instances.get(key)
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise DatasetFormatError(f"{path} has no {key!r} list of objects (COCO style expected)")
        tables.append(entries)
    images = {
        _get(e, "id", path, "an image"): _get(e, "file_name", path, f"image {e['id']}")
        for e in tables[0]
    }
    annotations = {_get(e, "id", path, "an annotation"): e for e in tables[1]}
    names = {
        _get(e, "id", path, "a category"): _get(e, "name", path, f"category {e['id']}")
        for e in tables[2]
    }
    return images, annotations, names


def _category(
    annotation: dict[str, Any], ref: dict[str, Any], names: dict[Any, str], where: str
) -> str | None:
    """Class name from ``categories_id`` (RRSIS-D's key), else ``category_id``, else the ref's."""
    for source, key in (
        (annotation, "categories_id"),
        (annotation, "category_id"),
        (ref, "category_id"),
    ):
        if key in source:
            class_id = source[key]
            if class_id not in names:
                raise DatasetFormatError(
                    f"{where}: class id {cut(class_id)} is not in the categories list"
                )
            return names[class_id]
    return None


def _sentences(ref: dict[str, Any], where: str) -> list[tuple[str, str]]:
    """(sample id, sentence) for each sentence of a ref."""
    sentences = ref.get("sentences")
    if not isinstance(sentences, list) or not sentences:
        raise DatasetFormatError(f"{where} has no sentences list")
    sent_ids = ref.get("sent_ids") or []
    result = []
    for k, sentence in enumerate(sentences):
        if not isinstance(sentence, dict):
            raise DatasetFormatError(
                f"{where}: sentence {k} is a {type(sentence).__name__}, not a dict"
            )
        text = str(sentence.get("raw") or "").strip() or str(sentence.get("sent") or "").strip()
        if not text:
            raise DatasetFormatError(f"{where}: sentence {k} has neither 'raw' nor 'sent' text")
        sent_id = sentence.get("sent_id", sent_ids[k] if k < len(sent_ids) else k)
        result.append((f"{ref['ref_id']}_{sent_id}", text))
    return result


#: Parts of one segmentation; real annotations have a handful.
MAX_PARTS = 1000
#: How far (a fraction of the side) a polygon vertex may stray outside the image; annotation tools
#: overshoot the edge by a pixel or two, never by a tenth of the image.
POLYGON_MARGIN = 0.1


def decode_segmentation(segmentation: Any, shape: tuple[int, int], *, where: str) -> np.ndarray:
    """Decode a COCO segmentation to a mask: the union of its parts.

    Every part is checked against the image before pycocotools sees it: it allocates in
    proportion to a polygon's coordinates and an RLE's size and run count, so a vertex at 1e12
    would ask for terabytes (and pycocotools does not check its allocations).

    Args:
        segmentation: a list of parts, each a compressed RLE (``counts`` str), an uncompressed RLE
            (``counts`` list) or a polygon (flat list of x, y in pixels); or one RLE dict.
        shape: (H, W) of the image, in pixels; every RLE ``size`` must equal it.
        where: names the annotation in error messages.

    Returns:
        (H, W) bool.

    Raises:
        DatasetFormatError: a part is malformed, lies outside the image, or its size does not
            match the image.
    """
    from pycocotools import mask as coco

    height, width = shape
    parts = [segmentation] if isinstance(segmentation, dict) else segmentation
    if not isinstance(parts, list) or not parts:
        raise DatasetFormatError(f"{where}: segmentation is empty or not a list")
    if len(parts) > MAX_PARTS:
        raise DatasetFormatError(
            f"{where}: segmentation has {len(parts)} parts, more than the {MAX_PARTS} allowed"
        )
    rles: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, dict):
            rles.append(_checked_rle(part, height, width, where))
        elif isinstance(part, list):
            polygon = _checked_polygon(part, height, width, where)
            rles.extend(coco.frPyObjects([polygon], height, width))
        else:
            raise DatasetFormatError(f"{where}: segmentation part is a {type(part).__name__}")
    with warnings.catch_warnings():  # pycocotools' numpy-2 'copy keyword' notice, not ours
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        union = coco.merge(rles, intersect=False) if len(rles) > 1 else rles[0]
        decoded = coco.decode(union)
    return decoded > 0


def _checked_polygon(part: list[Any], height: int, width: int, where: str) -> list[float]:
    """A flat x, y list whose vertices lie on the image (within :data:`POLYGON_MARGIN`) and
    whose outline is no longer than the image could hold."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in part)
    if not numeric or len(part) < 6 or len(part) % 2:
        raise DatasetFormatError(f"{where}: a polygon must be a flat list of >= 3 x, y pairs")
    points = np.asarray(part, dtype=np.float64).reshape(-1, 2)
    low = -POLYGON_MARGIN * np.array([width, height])
    high = (1 + POLYGON_MARGIN) * np.array([width, height])
    outside = ~(np.isfinite(points).all(axis=1) & (points >= low).all(axis=1))
    outside |= ~(points <= high).all(axis=1)
    if outside.any():
        x, y = points[int(np.argmax(outside))]
        raise DatasetFormatError(
            f"{where}: polygon vertex ({x:.6g}, {y:.6g}) lies outside the {width}x{height} px "
            "image; fix or drop the annotation"
        )
    # pycocotools walks every edge pixel by pixel (x5): bound the outline by what the image holds.
    perimeter = float(np.abs(np.diff(points, axis=0, append=points[:1])).max(axis=1).sum())
    if perimeter > height * width + 2 * (height + width):
        raise DatasetFormatError(
            f"{where}: polygon of {len(points)} vertices has an outline of {perimeter:.0f} px, "
            f"more than a {width}x{height} px image can hold"
        )
    return [float(v) for v in part]


def _checked_rle(rle: dict[str, Any], height: int, width: int, where: str) -> dict[str, Any]:
    """An RLE pycocotools can decode safely (it fills short RLEs with garbage, so check totals)."""
    from pycocotools import mask as coco

    size, counts = rle.get("size"), rle.get("counts")
    if not isinstance(size, list | tuple) or list(size) != [height, width]:
        raise DatasetFormatError(
            f"{where}: RLE size {cut(size)} does not match the image ({height}x{width} px)"
        )
    pixels = height * width
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        # A run takes at least one character and at most ceil(64 / 5) = 13.
        if len(counts) > 13 * (pixels + 1):
            raise DatasetFormatError(
                f"{where}: RLE counts string of {len(counts)} characters is longer than a "
                f"{height}x{width} px image allows"
            )
        total = _compressed_rle_total(counts, where)
    elif isinstance(counts, list):
        if len(counts) > pixels + 1:
            raise DatasetFormatError(
                f"{where}: RLE has {len(counts)} runs, more than a {height}x{width} px image allows"
            )
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise DatasetFormatError(f"{where}: RLE counts must be non-negative integers")
        total = sum(counts)
    else:
        raise DatasetFormatError(f"{where}: RLE counts must be a string or a list of counts")
    if total != pixels:
        raise DatasetFormatError(f"{where}: RLE covers {total} pixels but the image has {pixels}")
    if isinstance(counts, list):
        return coco.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": counts}


def _compressed_rle_total(counts: str, where: str) -> int:
    """Sum of the run lengths of a COCO compressed RLE string (pycocotools' rleFrString)."""
    total, before_last, last, n_runs = 0, 0, 0, 0
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise DatasetFormatError(f"{where}: RLE counts string is truncated")
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                raise DatasetFormatError(f"{where}: RLE counts string has an invalid character")
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position += 1
            shift += 1
            if shift > 13:
                raise DatasetFormatError(f"{where}: RLE counts string has a run too long")
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        if n_runs > 2:
            value += before_last
        if value < 0:
            raise DatasetFormatError(f"{where}: RLE counts string decodes to a negative run")
        before_last, last = last, value
        total += value
        n_runs += 1
    return total
