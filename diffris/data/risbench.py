"""RISBench: 52,472 image-sentence-mask triplets, 512x512 PNG at 0.1-30 m GSD, 26 classes.

Layout::

    <root>/img_rgb/<name>.png
    <root>/mask/<name>.png                      grayscale, same file name
    <root>/output_phrase_{train,val,test}.txt   one "<name>.png <sentence>" per line

Names look like ``train_<img>_<obj>.png`` but the prefix is not the split (val lines use
``train_`` names): the split is the file a line is in. Sentences are long and objects can be tiny.
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


class RISBench(ReferringDataset):
    """The RISBench benchmark (see the module docstring for the layout).

    Sample ids are ``<split>/<name without .png>`` (``#2``, ``#3``... on later lines that repeat a
    name). Masks are binarised with > 50. RISBench stores no class per sample: ``category`` is
    inferred from the sentence with :class:`~diffris.data.base.CategoryMatcher`.

    Checked when the dataset is built: the phrase file of the split exists, every line has a
    ``.png`` name and a sentence, and every listed image and mask exists. Checked when a sample is
    read: both are readable 8-bit images of the same size.
    """

    name = "risbench"
    title = "RISBench"
    layout = "img_rgb/, mask/, output_phrase_{train,val,test}.txt"
    categories: ClassVar[tuple[str, ...]] = (
        "expressway service area",
        "expressway toll station",
        "ground track field",
        "basketball court",
        "container crane",
        "roundabout",
        "windmill",
        "overpass",
        "stadium",
        "bridge",
        "soccer ball field",
        "baseball diamond",
        "train station",
        "golf field",
        "airport",
        "harbor",
        "dam",
        "ship",
        "helipad",
        "vehicle",
        "chimney",
        "airplane",
        "helicopter",
        "tennis court",
        "storage tank",
        "swimming pool",
    )

    def _required(self) -> list[str]:
        return ["img_rgb/", "mask/", self._listing()]

    def _listing(self) -> str:
        return f"output_phrase_{self.split.value}.txt"

    def _index(self) -> list[Record]:
        path = self.root / self._listing()
        lines = read_phrase_file(path, key_hint="<name>.png")
        for line in lines:
            if not line.key.lower().endswith(".png") or "/" in line.key:
                raise DatasetFormatError(
                    f"{path} line {line.line_number}: {line.key!r} is not a .png file name; "
                    "expected '<name>.png <sentence>'"
                )
        infer = CategoryMatcher(self.categories)
        ids = unique_ids(self.split, (line.key[: -len(".png")] for line in lines))
        return [
            Record(
                sample_id=sample_id,
                sentence=line.sentence,
                image_file=f"img_rgb/{line.key}",
                mask_file=f"mask/{line.key}",
                category=infer(line.sentence),
            )
            for sample_id, line in zip(ids, lines, strict=True)
        ]
