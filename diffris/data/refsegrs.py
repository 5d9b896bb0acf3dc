"""RefSegRS: 4,420 image-sentence-mask triplets, 512x512 TIFF at 0.13 m GSD, 14 classes.

Layout::

    <root>/images/<id>.tif                      RGB
    <root>/masks/<id>.tif                       single channel, same <id>
    <root>/output_phrase_{train,val,test}.txt   one "<id> <sentence words...>" per line

``<id>`` is a bare integer (no extension); the split is the file a line is in.
"""

from __future__ import annotations

from typing import ClassVar

from diffris.data.base import (
    CategoryMatcher,
    DatasetFormatError,
    Record,
    ReferringDataset,
    read_phrase_file,
    unique_ids,
)


class RefSegRS(ReferringDataset):
    """The RefSegRS benchmark (see the module docstring for the layout).

    Sample ids are ``<split>/<id>`` (``#2``, ``#3``... on later lines that repeat an id). Masks are
    binarised with > 50. RefSegRS stores no class per sample: ``category`` is inferred from the
    sentence with :class:`~diffris.data.base.CategoryMatcher` over :attr:`categories`.

    Checked when the dataset is built: the phrase file of the split exists, every line has an
    integer id and a sentence, and every listed image and mask exists. Checked when a sample is
    read: both are readable 8-bit rasters of the same size.
    """

    name = "refsegrs"
    title = "RefSegRS"
    layout = "images/, masks/, output_phrase_{train,val,test}.txt"
    categories: ClassVar[tuple[str, ...]] = (
        "road",
        "vehicle",
        "car",
        "van",
        "building",
        "truck",
        "trailer",
        "bus",
        "road marking",
        "bikeway",
        "sidewalk",
        "tree",
        "low vegetation",
        "impervious surface",
    )

    def _required(self) -> list[str]:
        return ["images/", "masks/", self._listing()]

    def _listing(self) -> str:
        return f"output_phrase_{self.split.value}.txt"

    def _index(self) -> list[Record]:
        path = self.root / self._listing()
        lines = read_phrase_file(path, key_hint="<id>")
        for line in lines:
            if not line.key.isdigit():
                raise DatasetFormatError(
                    f"{path} line {line.line_number}: id {line.key!r} is not a bare integer; "
                    "expected '<id> <sentence>' with images/<id>.tif"
                )
        infer = CategoryMatcher(self.categories)
        ids = unique_ids(self.split, (line.key for line in lines))
        return [
            Record(
                sample_id=sample_id,
                sentence=line.sentence,
                image_file=f"images/{line.key}.tif",
                mask_file=f"masks/{line.key}.tif",
                category=infer(line.sentence),
            )
            for sample_id, line in zip(ids, lines, strict=True)
        ]
