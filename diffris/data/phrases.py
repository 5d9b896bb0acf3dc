"""Phrase files (``output_phrase_<split>.txt``: ``<key> <sentence>`` per line) and the datasets
laid out around them (RefSegRS, RISBench): an image folder, a mask folder of the same names, one
phrase file per split."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from diffris.data.base import Record, ReferringDataset, Split
from diffris.errors import DatasetFormatError
from diffris.messages import cut


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
                f"{path} line {number}: {cut(parts[0])} has no sentence; "
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


class PhraseFileDataset(ReferringDataset):
    """A benchmark with ``<image_dir>/``, ``<mask_dir>/`` and ``output_phrase_<split>.txt``.

    Subclasses name the folders, say how a line's key looks (:meth:`check_key`) and map a key to
    its image and mask file names. The split is the phrase file a line is in, never the name;
    categories are inferred from the sentence (:class:`CategoryMatcher`).
    """

    image_dir: ClassVar[str]
    mask_dir: ClassVar[str]
    #: How a key looks, for error messages (``<id>``, ``<name>.png``).
    key_hint: ClassVar[str]

    def _required(self) -> list[str]:
        return [f"{self.image_dir}/", f"{self.mask_dir}/", self._listing()]

    def _listing(self) -> str:
        return f"output_phrase_{self.split.value}.txt"

    def check_key(self, key: str) -> str | None:
        """Why ``key`` is malformed, or None when it is fine."""
        return None

    def file_name(self, key: str) -> str:
        """The image and mask file name of ``key``."""
        return key

    def id_of(self, key: str) -> str:
        """The key as it appears in the sample id (``<split>/<id>``)."""
        return key

    def _index(self) -> list[Record]:
        path = self.root / self._listing()
        lines = read_phrase_file(path, key_hint=self.key_hint)
        for line in lines:
            if (problem := self.check_key(line.key)) is not None:
                raise DatasetFormatError(f"{path} line {line.line_number}: {problem}")
        infer = CategoryMatcher(self.categories)
        ids = unique_ids(self.split, (self.id_of(line.key) for line in lines))
        return [
            Record(
                sample_id=sample_id,
                sentence=line.sentence,
                image_file=f"{self.image_dir}/{self.file_name(line.key)}",
                mask_file=f"{self.mask_dir}/{self.file_name(line.key)}",
                category=infer(line.sentence),
            )
            for sample_id, line in zip(ids, lines, strict=True)
        ]
