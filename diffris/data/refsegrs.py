"""RefSegRS: 4,420 image-sentence-mask triplets, 512x512 TIFF at 0.13 m GSD, 14 classes.

Layout::

    <root>/images/<id>.tif                      RGB
    <root>/masks/<id>.tif                       single channel, same <id>
    <root>/output_phrase_{train,val,test}.txt   one "<id> <sentence words...>" per line

``<id>`` is a bare integer (no extension); the split is the file a line is in.
"""

from __future__ import annotations

from typing import ClassVar

from diffris.data.phrases import PhraseFileDataset
from diffris.messages import cut


class RefSegRS(PhraseFileDataset):
    """The RefSegRS benchmark (see the module docstring for the layout).

    Sample ids are ``<split>/<id>`` (``#2``, ``#3``... on later lines that repeat an id). Masks are
    binarised with > 50. RefSegRS stores no class per sample: ``category`` is inferred from the
    sentence with :class:`~diffris.data.phrases.CategoryMatcher` over :attr:`categories`.

    Checked when the dataset is built: the phrase file of the split exists, every line has an
    integer id and a sentence, and every listed image and mask exists. Checked when a sample is
    read: both are readable 8-bit rasters of the same size.
    """

    name = "refsegrs"
    title = "RefSegRS"
    image_dir = "images"
    mask_dir = "masks"
    key_hint = "<id>"
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

    def check_key(self, key: str) -> str | None:
        if key.isdigit():
            return None
        return (
            f"id {cut(key)} is not a bare integer; expected '<id> <sentence>' with images/<id>.tif"
        )

    def file_name(self, key: str) -> str:
        return f"{key}.tif"
