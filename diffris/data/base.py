"""What every benchmark loader shares: the sample contract, the base class and the registry.

torchgeo style: one dataset per file (:mod:`~diffris.data.rrsisd`, :mod:`~diffris.data.refsegrs`,
:mod:`~diffris.data.risbench`), all with the constructor ``Dataset(root, split="train",
transforms=None)``. Indexing returns a :class:`Sample` (image and mask at their original size), or
whatever ``transforms(sample)`` returns. Every sentence is its own sample.

A dataset checks its layout and lists its samples when it is built, and fails then, with the
first missing file named, rather than in the middle of a training run.
"""

from __future__ import annotations

import abc
import enum
import importlib
import logging
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch.utils.data
from PIL import Image

from diffris.errors import DatasetNotFoundError, InputError

logger = logging.getLogger(__name__)


class DatasetFormatError(InputError):
    """A dataset file exists but does not hold what the format promises."""


class Split(enum.StrEnum):
    """The three splits every benchmark has."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"

    @classmethod
    def parse(cls, value: Split | str) -> Split:
        """``value`` as a :class:`Split`; anything else raises :class:`InputError`."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(member.value for member in cls)
            raise InputError(f"split {value!r} is not one of {valid}") from None


@dataclass(frozen=True, slots=True)
class SampleMeta:
    """Where a sample comes from.

    Attributes:
        dataset: registry name of the dataset (``rrsisd``, ``refsegrs``, ``risbench``).
        split: the split the sample belongs to.
        sample_id: unique within the dataset; stable across runs (used in reports and galleries).
        image_file: path of the image relative to the dataset root, with ``/`` separators.
        category: class name when known (RRSIS-D: from the annotation; RefSegRS and RISBench:
            inferred from the sentence, see :class:`CategoryMatcher`), else None.
        index: position of the sample in the dataset object that produced it.
    """

    dataset: str
    split: Split
    sample_id: str
    image_file: str
    category: str | None
    index: int


@dataclass(frozen=True, slots=True, eq=False)
class Sample:
    """One image-sentence-mask triplet at the image's original size.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) bool, True on the referred object.
        sentence: the referring expression, stripped of surrounding white space.
        meta: where it comes from.
    """

    image: np.ndarray
    mask: np.ndarray
    sentence: str
    meta: SampleMeta


@dataclass(frozen=True, slots=True)
class Record:
    """A sample before its files are read (what a dataset lists at construction).

    Attributes:
        sample_id: see :class:`SampleMeta`.
        sentence: the referring expression.
        image_file: image path relative to the root, ``/``-separated.
        mask_file: mask path relative to the root, or None when the mask lives in an annotation
            file (RRSIS-D).
        category: class name when known.
        annotation: key into the dataset's own annotation table (RRSIS-D annotation id).
    """

    sample_id: str
    sentence: str
    image_file: str
    mask_file: str | None
    category: str | None
    annotation: int | str | None = None


Transform = Callable[[Sample], Any]


class ReferringDataset(torch.utils.data.Dataset[Any], abc.ABC):
    """Base of the benchmark loaders: checks the layout, lists records, reads samples.

    Subclasses set the class attributes and implement :meth:`_required`, :meth:`_listing` and
    :meth:`_index`; those whose masks are not image files override :meth:`_read_mask`.

    Args:
        root: the dataset folder (layout in each subclass' docstring).
        split: ``train``, ``val`` or ``test``.
        transforms: applied to each :class:`Sample`; ``__getitem__`` returns its output.

    Raises:
        DatasetNotFoundError: a file of the layout, or a file a listing names, is missing.
        DatasetFormatError: an annotation or phrase file is malformed.
        InputError: ``split`` is not one of the three.
    """

    #: Registry name, also ``SampleMeta.dataset``.
    name: ClassVar[str]
    #: The name used in messages, as the papers write it.
    title: ClassVar[str]
    #: The expected layout, as shown in "not found" messages.
    layout: ClassVar[str]
    #: The class names, in the dataset's own order.
    categories: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Split | str = Split.TRAIN,
        transforms: Transform | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = Split.parse(split)
        self.transforms = transforms
        for relative in self._required():
            if not (self.root / relative).exists():
                raise DatasetNotFoundError(
                    f"{self.title} not found under {self.root}: missing {relative} "
                    f"(expected {self.layout})"
                )
        self.records: list[Record] = self._index()
        self._check_listed_files()
        logger.debug("%r", self)

    @abc.abstractmethod
    def _required(self) -> list[str]:
        """Layout entries needed for this split, in the order they are reported when missing."""

    @abc.abstractmethod
    def _index(self) -> list[Record]:
        """Read the annotation or phrase files and list this split's samples."""

    @abc.abstractmethod
    def _listing(self) -> str:
        """The file that lists this split's samples (named when a listed file is missing)."""

    def _read_mask(self, record: Record, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) bool mask of ``record``; ``shape`` is the image's (H, W)."""
        if record.mask_file is None:
            raise DatasetFormatError(f"{self.title} sample {record.sample_id} names no mask")
        return read_mask(self.root / record.mask_file)

    def _check_listed_files(self) -> None:
        listed = list(dict.fromkeys(_files_of(self.records)))
        missing = missing_files(self.root, listed)
        if missing:
            raise DatasetNotFoundError(
                f"{self.title} under {self.root} is incomplete: {len(missing)} of {len(listed)} "
                f"files listed in {self._listing()} are missing, the first is {missing[0]}; "
                "re-extract the dataset or point root at a complete copy"
            )

    def __len__(self) -> int:
        return len(self.records)

    def _position(self, index: int) -> int:
        size = len(self.records)
        index = operator.index(index)  # numpy integers from samplers become int
        position = index + size if index < 0 else index
        if not 0 <= position < size:
            raise IndexError(f"index {index} out of range for {self.title} {self.split} ({size})")
        return position

    def meta(self, index: int) -> SampleMeta:
        """What sample ``index`` is, without reading its files."""
        position = self._position(index)
        record = self.records[position]
        return SampleMeta(
            dataset=self.name,
            split=self.split,
            sample_id=record.sample_id,
            image_file=record.image_file,
            category=record.category,
            index=position,
        )

    def sample(self, index: int) -> Sample:
        """Sample ``index`` at its original size, without transforms."""
        meta = self.meta(index)
        record = self.records[meta.index]
        image = read_rgb(self.root / record.image_file)
        mask = self._read_mask(record, (image.shape[0], image.shape[1]))
        if mask.shape != image.shape[:2]:
            where = record.mask_file or f"the annotation of {record.sample_id}"
            raise DatasetFormatError(
                f"{self.title}: mask {where} is {mask.shape[0]}x{mask.shape[1]} px but image "
                f"{record.image_file} is {image.shape[0]}x{image.shape[1]} px; they must match"
            )
        return Sample(image=image, mask=mask, sentence=record.sentence, meta=meta)

    def __getitem__(self, index: int) -> Any:
        sample = self.sample(index)
        return sample if self.transforms is None else self.transforms(sample)

    def __iter__(self) -> Iterator[Any]:
        return (self[index] for index in range(len(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split.value!r}, n={len(self)})"


def _files_of(records: Iterable[Record]) -> Iterator[str]:
    for record in records:
        yield record.image_file
        if record.mask_file is not None:
            yield record.mask_file


def missing_files(root: Path, relatives: Sequence[str]) -> list[str]:
    """The entries of ``relatives`` (``/``-separated, under ``root``) that do not exist.

    Lists each folder once instead of one ``stat`` per file: tens of thousands of files are
    checked in well under a second, even on network file systems.
    """
    listings: dict[str, set[str]] = {}
    missing = []
    for relative in relatives:
        folder, _, name = relative.rpartition("/")
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(root / folder))
            except (FileNotFoundError, NotADirectoryError):
                listings[folder] = set()
        if name not in listings[folder]:
            missing.append(relative)
    return missing


#: Mask pixels above this value are the object (the reference loaders' rule).
MASK_THRESHOLD = 50
_TIFF_SUFFIXES = (".tif", ".tiff")


def read_rgb(path: Path) -> np.ndarray:
    """Read an 8-bit image as RGB.

    Grey images are repeated to three channels, alpha is dropped, palettes are applied.

    Returns:
        (H, W, 3) uint8.

    Raises:
        DatasetFormatError: unreadable, not 8-bit, or a channel count that is not 1-4.
    """
    array = _read_channels(path)
    if array.dtype == bool:  # bilevel
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise DatasetFormatError(
            f"{path} is a {array.dtype} image; the benchmarks use 8-bit RGB images"
        )
    channels = array.shape[2]
    if channels in (1, 2):  # grey, grey + alpha
        return np.repeat(array[:, :, :1], 3, axis=2)
    if channels in (3, 4):  # RGB, RGB + alpha
        return np.ascontiguousarray(array[:, :, :3])
    raise DatasetFormatError(f"{path} has {channels} bands; expected an RGB or grey image")


def read_mask(path: Path) -> np.ndarray:
    """Read a mask image and binarise it: True where a pixel is > :data:`MASK_THRESHOLD`.

    Masks stored with colour channels (RGB, or a palette) count a pixel as object when any
    colour channel is > 50, so white-on-black and colour-on-black masks both work; alpha is
    ignored. Bilevel (1-bit) masks map to 0/255 first.

    Returns:
        (H, W) bool.
    """
    array = _read_channels(path)
    if array.dtype == bool:
        return array[:, :, 0].copy()
    channels = array.shape[2]
    colour = array[:, :, : 1 if channels == 2 else 3]  # drop alpha
    return np.asarray((colour > MASK_THRESHOLD).any(axis=2))


def _read_channels(path: Path) -> np.ndarray:
    """(H, W, C) pixels; palettes resolved to RGB; alpha, if any, last."""
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return _read_with_rasterio(path)
    try:
        with Image.open(path) as opened:
            image: Image.Image = opened
            if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGBA" if image.mode == "PA" else "RGB")
            array = np.asarray(image)
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise DatasetFormatError(f"{path} is not a readable image: {err}") from err
    return array[:, :, None] if array.ndim == 2 else array


def _read_with_rasterio(path: Path) -> np.ndarray:
    """TIFFs through GDAL, which reads every TIFF flavour (tiled, BigTIFF, JPEG/ZSTD/LZW)."""
    import warnings

    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as source:
                bands = source.read()
                interpretation = source.colorinterp
                colormap = (
                    source.colormap(1)
                    if source.count == 1 and interpretation[0] == ColorInterp.palette
                    else None
                )
    except RasterioIOError as err:
        raise DatasetFormatError(f"{path} is not a readable TIFF: {err}") from err
    if colormap is not None:
        table = np.zeros((max(int(bands.max()), max(colormap)) + 1, 3), np.uint8)
        for value, rgba in colormap.items():
            table[value] = rgba[:3]
        return table[bands[0]]
    keep = [i for i, kind in enumerate(interpretation) if kind != ColorInterp.alpha]
    alpha = [i for i, kind in enumerate(interpretation) if kind == ColorInterp.alpha]
    return np.moveaxis(bands[keep + alpha], 0, 2)


@dataclass(frozen=True, slots=True)
class PhraseLine:
    """One line of an ``output_phrase_<split>.txt`` file: ``<key> <sentence>``."""

    line_number: int
    key: str
    sentence: str


def read_phrase_file(path: Path, *, key_hint: str) -> list[PhraseLine]:
    """Parse a RefSegRS / RISBench phrase file: one ``<key> <sentence words...>`` per line.

    Line endings (``\\n`` or ``\\r\\n``) and surrounding white space are stripped; blank lines are
    skipped. The key ends at the first white space.

    Args:
        path: the phrase file.
        key_hint: how the key looks, for error messages (e.g. ``<id>``, ``<name>.png``).

    Raises:
        DatasetFormatError: the file is not UTF-8 text, or a line has no sentence.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetFormatError(f"{path} is not UTF-8 text: {err}") from err
    lines = []
    # Split on "\n" only: str.splitlines() would also break at U+2028 etc. inside a sentence.
    for number, raw in enumerate(text.split("\n"), start=1):
        parts = raw.strip().split(maxsplit=1)
        if not parts:
            continue
        if len(parts) == 1:
            raise DatasetFormatError(
                f"{path} line {number}: {parts[0]!r} has no sentence; "
                f"expected '{key_hint} <sentence>'"
            )
        lines.append(PhraseLine(number, parts[0], parts[1].strip()))
    if not lines:
        raise DatasetFormatError(f"{path} lists no samples; expected '{key_hint} <sentence>' lines")
    return lines


def unique_ids(split: Split, keys: Iterable[str]) -> list[str]:
    """Sample ids ``<split>/<key>``, with ``#2``, ``#3``... on later lines that repeat a key."""
    seen: dict[str, int] = {}
    ids = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        suffix = f"#{seen[key]}" if seen[key] > 1 else ""
        ids.append(f"{split.value}/{key}{suffix}")
    return ids


class CategoryMatcher:
    """Infer a sample's class from its sentence, for datasets that do not store it.

    The class is the name that occurs **earliest** in the sentence (the subject usually comes
    first: "the car next to the road" -> car); among names starting at the same word the longest
    wins ("road marking" before "road"). Matching is case-insensitive on whole words, allows a
    plural ``s``/``es`` and any white space between words. No match gives None. This is a
    heuristic for per-class breakdowns, not ground truth.
    """

    def __init__(self, names: Sequence[str]) -> None:
        by_length = sorted(names, key=len, reverse=True)
        words = [r"\s+".join(re.escape(word) for word in name.split()) for name in by_length]
        self._pattern = re.compile(rf"\b({'|'.join(words)})(?:e?s)?\b", re.IGNORECASE)
        self._canonical = {name.lower(): name for name in names}

    def __call__(self, sentence: str) -> str | None:
        match = self._pattern.search(sentence)
        if match is None:
            return None
        return self._canonical[" ".join(match.group(1).lower().split())]


class _Registry(Mapping[str, type[ReferringDataset]]):
    """Dataset name -> class, importing each loader module only when it is asked for."""

    _WHERE: ClassVar[dict[str, tuple[str, str]]] = {
        "rrsisd": ("diffris.data.rrsisd", "RRSISD"),
        "refsegrs": ("diffris.data.refsegrs", "RefSegRS"),
        "risbench": ("diffris.data.risbench", "RISBench"),
    }

    def __getitem__(self, name: str) -> type[ReferringDataset]:
        module, attribute = self._WHERE[name]
        return getattr(importlib.import_module(module), attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(self._WHERE)

    def __len__(self) -> int:
        return len(self._WHERE)


#: The benchmarks by name: ``DATASETS["risbench"]`` is :class:`~diffris.data.risbench.RISBench`.
DATASETS: Mapping[str, type[ReferringDataset]] = _Registry()


def open_dataset(
    name: str,
    root: str | os.PathLike[str],
    split: Split | str = Split.TRAIN,
    transforms: Transform | None = None,
) -> ReferringDataset:
    """Open a benchmark by name (case and hyphens ignored: ``RRSIS-D`` is ``rrsisd``).

    Raises:
        InputError: ``name`` is not a known dataset (the message lists the valid ones).
        DatasetNotFoundError, DatasetFormatError: see :class:`ReferringDataset`.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[key](root, split=split, transforms=transforms)
