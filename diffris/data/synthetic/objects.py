"""The in-memory result of the generator: an image, its objects and the referrals to them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffris.data.synthetic.expressions import Expression
from diffris.data.synthetic.vocab import Category, Colour


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One object of a synthetic image.

    Attributes:
        category: what it is.
        colour: its colour, or None for categories without one.
        mask: (H, W) bool, the pixels where it is visible (what a referral to it segments).
        footprint: (H, W) bool, its whole shape within the image, hidden parts included.
        bbox: (x1, y1, x2, y2) px of ``mask``; x2 and y2 exclusive.
        area: visible pixel count.
        centroid: (x, y) px, the mean of the visible pixel centres.
    """

    category: Category
    colour: Colour | None
    mask: np.ndarray
    footprint: np.ndarray
    bbox: tuple[int, int, int, int]
    area: int
    centroid: tuple[float, float]

    @classmethod
    def from_masks(
        cls, category: Category, colour: Colour | None, mask: np.ndarray, footprint: np.ndarray
    ) -> SceneObject:
        """Derive bbox, area and centroid from a non-empty visible ``mask`` (H, W) bool."""
        rows, cols = np.nonzero(mask)
        bbox = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
        centroid = (float(cols.mean()) + 0.5, float(rows.mean()) + 0.5)
        return cls(category, colour, mask, footprint, bbox, int(rows.size), centroid)


@dataclass(frozen=True, eq=False)
class Referral:
    """A sentence and the mask it refers to.

    Attributes:
        sentence: lower-case, no final punctuation, e.g. "the blue car on the road".
        expression: what the sentence says (``parse(sentence) == expression``).
        object_indices: indices into the image's objects; one, or several for a plural.
        mask: (H, W) bool, the union of those objects' visible masks.
    """

    sentence: str
    expression: Expression
    object_indices: tuple[int, ...]
    mask: np.ndarray

    @property
    def object_index(self) -> int | None:
        """The one referred object, or None for a plural referral."""
        return self.object_indices[0] if len(self.object_indices) == 1 else None

    @property
    def category(self) -> Category:
        return self.expression.category


@dataclass(frozen=True, eq=False)
class SyntheticImage:
    """An aerial-looking image with its objects and several referrals to different objects.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        objects: every visible object.
        referrals: sentences, each matching exactly one object (or one group, for plurals).
    """

    image: np.ndarray
    objects: list[SceneObject]
    referrals: list[Referral]

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in px."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))
