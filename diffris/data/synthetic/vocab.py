"""The visual and verbal vocabulary of the synthetic aerial scenes.

One place defines what exists (categories and their colours), how it looks (base RGB colours,
paint order) and what it is called (nouns and their plurals), so the dataset images, the large
georeferenced scenes and the referring expressions can never disagree.

The palette is chosen for learnability by a tiny model whose backbone has random weights: each
category differs from the others by colour *and* texture (water smooth blue-green, roads grey strips
with white dashes, roofs saturated rectangles with a ridge, fields striped, trees dark blobs,
vehicles small bright rectangles).
"""

from __future__ import annotations

import enum


class Category(enum.Enum):
    """What an object is. The definition order is the category id order (0..K-1)."""

    BUILDING = "building"
    VEHICLE = "vehicle"
    ROAD = "road"
    RIVER = "river"
    POND = "pond"
    FIELD = "field"
    TREE = "tree"

    @property
    def id(self) -> int:
        """The category id written to annotation files (0..K-1, definition order)."""
        return list(Category).index(self)


class Colour(enum.Enum):
    """A colour word an expression may use."""

    RED = "red"
    BLUE = "blue"
    WHITE = "white"
    YELLOW = "yellow"
    GREEN = "green"


#: Colours each category comes in; an empty tuple means the category has no colour attribute.
CATEGORY_COLOURS: dict[Category, tuple[Colour, ...]] = {
    Category.BUILDING: (Colour.RED, Colour.BLUE, Colour.WHITE),
    Category.VEHICLE: (Colour.RED, Colour.BLUE, Colour.WHITE, Colour.YELLOW),
    Category.ROAD: (),
    Category.RIVER: (),
    Category.POND: (),
    Category.FIELD: (Colour.GREEN, Colour.YELLOW),
    Category.TREE: (),
}

#: Paint order (low first): a later category hides an earlier one where they overlap.
Z_ORDER: dict[Category, int] = {
    Category.FIELD: 1,
    Category.RIVER: 2,
    Category.POND: 2,
    Category.ROAD: 3,
    Category.TREE: 4,
    Category.BUILDING: 5,
    Category.VEHICLE: 6,
}

RGB = tuple[int, int, int]

#: Bare ground between objects: a blend of two muted browns (low saturation on purpose).
GROUND: tuple[RGB, RGB] = ((156, 140, 112), (126, 120, 98))
ROAD: RGB = (100, 100, 104)
ROAD_MARKING: RGB = (236, 236, 226)
WATER: RGB = (36, 92, 112)
TREE: RGB = (34, 74, 30)
WINDOW: RGB = (38, 44, 54)

ROOF: dict[Colour, RGB] = {
    Colour.RED: (178, 56, 44),
    Colour.BLUE: (50, 86, 170),
    Colour.WHITE: (226, 226, 220),
}
VEHICLE: dict[Colour, RGB] = {
    Colour.RED: (224, 34, 34),
    Colour.BLUE: (34, 82, 226),
    Colour.WHITE: (246, 246, 246),
    Colour.YELLOW: (242, 208, 38),
}
#: Fields are striped: two alternating tones per colour.
FIELD: dict[Colour, tuple[RGB, RGB]] = {
    Colour.GREEN: ((70, 136, 50), (100, 166, 62)),
    Colour.YELLOW: ((204, 178, 82), (228, 204, 112)),
}

#: Singular nouns per category; the first is the canonical one (used for anchors and prompts).
NOUNS: dict[Category, tuple[str, ...]] = {
    Category.BUILDING: ("building", "roof", "house"),
    Category.VEHICLE: ("vehicle", "car"),
    Category.ROAD: ("road",),
    Category.RIVER: ("river",),
    Category.POND: ("pond",),
    Category.FIELD: ("field",),
    Category.TREE: ("tree", "group of trees"),
}
#: Plural nouns per category, first is canonical.
PLURALS: dict[Category, tuple[str, ...]] = {
    Category.BUILDING: ("buildings", "roofs", "houses"),
    Category.VEHICLE: ("vehicles", "cars"),
    Category.ROAD: ("roads",),
    Category.RIVER: ("rivers",),
    Category.POND: ("ponds",),
    Category.FIELD: ("fields",),
    Category.TREE: ("trees",),
}

#: Nouns preferred with a colour ("the red roof" reads better than "the red building").
COLOURED_NOUNS: dict[Category, tuple[str, ...]] = {
    Category.BUILDING: ("roof", "building"),
    Category.VEHICLE: ("car", "vehicle"),
    Category.FIELD: ("field",),
}
COLOURED_PLURALS: dict[Category, tuple[str, ...]] = {
    Category.BUILDING: ("roofs", "buildings"),
    Category.VEHICLE: ("cars", "vehicles"),
    Category.FIELD: ("fields",),
}


def category_names() -> tuple[str, ...]:
    """The category names in id order."""
    return tuple(category.value for category in Category)
