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

from diffris.data.phrases import PhraseFileDataset
from diffris.messages import cut


class RISBench(PhraseFileDataset):
    """The RISBench benchmark (see the module docstring for the layout).

    Sample ids are ``<split>/<name without .png>`` (``#2``, ``#3``... on later lines that repeat a
    name). Masks are binarised with > 50. RISBench stores no class per sample: ``category`` is
    inferred from the sentence with :class:`~diffris.data.phrases.CategoryMatcher`.

    Checked when the dataset is built: the phrase file of the split exists, every line has a
    ``.png`` name and a sentence, and every listed image and mask exists. Checked when a sample is
    read: both are readable 8-bit images of the same size.
    """

    name = "risbench"
    title = "RISBench"
    image_dir = "img_rgb"
    mask_dir = "mask"
    key_hint = "<name>.png"
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

    def check_key(self, key: str) -> str | None:
        if key.lower().endswith(".png") and "/" not in key:
            return None
        return f"{cut(key)} is not a .png file name; expected '<name>.png <sentence>'"

    def id_of(self, key: str) -> str:
        return key[: -len(".png")]
