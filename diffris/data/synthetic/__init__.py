"""Procedural synthetic referring-segmentation data: aerial-looking images, scenes, sentences.

- :func:`generate_image`: one image (numpy) with its objects and several referrals, each
  unambiguous by construction (:func:`resolve` picks exactly the referred object).
- :func:`write_dataset`: many images in the RISBench, RefSegRS or RRSIS-D on-disk layout.
- :func:`write_scene`: a large georeferenced GeoTIFF written window by window, with a description
  file of scene-level prompts and a ground-truth mask per prompt.

Everything is seeded: the same arguments give byte-identical files.
"""

from diffris.data.synthetic.expressions import (
    Expression,
    Kind,
    Position,
    Relation,
    Size,
    describe,
    parse,
)
from diffris.data.synthetic.georef import (
    DEFAULT_PROMPTS,
    SceneDtype,
    ScenePrompt,
    SceneSummary,
    write_scene,
)
from diffris.data.synthetic.matcher import Truth, evaluate, resolve
from diffris.data.synthetic.objects import Referral, SceneObject, SyntheticImage
from diffris.data.synthetic.scene import generate_image
from diffris.data.synthetic.vocab import CATEGORY_COLOURS, Category, Colour, category_names
from diffris.data.synthetic.writers import (
    DatasetSummary,
    Layout,
    generate_samples,
    split_counts,
    write_dataset,
)

__all__ = [
    "CATEGORY_COLOURS",
    "DEFAULT_PROMPTS",
    "Category",
    "Colour",
    "DatasetSummary",
    "Expression",
    "Kind",
    "Layout",
    "Position",
    "Referral",
    "Relation",
    "SceneDtype",
    "SceneObject",
    "ScenePrompt",
    "SceneSummary",
    "Size",
    "SyntheticImage",
    "Truth",
    "category_names",
    "describe",
    "evaluate",
    "generate_image",
    "generate_samples",
    "parse",
    "resolve",
    "split_counts",
    "write_dataset",
    "write_scene",
]
