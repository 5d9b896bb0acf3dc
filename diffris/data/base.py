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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch.utils.data

from diffris.data.io import missing_files, read_mask, read_rgb
from diffris.errors import DatasetFormatError, DatasetNotFoundError, InputError

logger = logging.getLogger(__name__)


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

    ``synthetic`` opens a folder written by :func:`diffris.data.synthetic.write_dataset` with the
    loader of the layout it was written in (:func:`~diffris.data.synthetic.detect.synthetic_layout`).

    Raises:
        InputError: ``name`` is not a known dataset (the message lists the valid ones).
        DatasetNotFoundError: ``synthetic`` and the root holds none of the layouts.
        DatasetNotFoundError, DatasetFormatError: see :class:`ReferringDataset`.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key == "synthetic":  # a folder written by write_dataset, in one of the layouts below
        from diffris.data.synthetic.detect import synthetic_layout

        key = synthetic_layout(root)
    if key not in DATASETS:
        valid = ", ".join([*DATASETS, "synthetic"])
        raise InputError(f"unknown dataset {name!r}; choose one of: {valid}")
    return DATASETS[key](root, split=split, transforms=transforms)
