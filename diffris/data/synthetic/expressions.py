"""Referring expressions: a small structured grammar, its sentences, and a parser back.

An :class:`Expression` names a category, optionally a colour, and at most one disambiguating
modifier: a size (``the larger pond``), a position in the image (``the red roof at the top``,
``the car in the lower right``) or a relation to a unique anchor (``the building left of the
road``, ``the blue car on the road``). A plural expression (``the red roofs``, ``all ponds``)
refers to every object of its category and colour.

:func:`describe` turns an expression into one of a few sentence templates; :func:`parse` turns any
such sentence back into the same expression, so a test (or a user) can check that a sentence says
exactly what the generator meant. What an expression refers to is decided in
:mod:`diffris.data.synthetic.matcher`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from diffris.data.synthetic.vocab import (
    CATEGORY_COLOURS,
    COLOURED_NOUNS,
    COLOURED_PLURALS,
    NOUNS,
    PLURALS,
    Category,
    Colour,
)
from diffris.errors import InputError


class Size(enum.Enum):
    """Size superlatives (comparatives with two candidates)."""

    LARGEST = "largest"
    SMALLEST = "smallest"


class Position(enum.Enum):
    """Where in the image: an extreme (left, top, ...) or a quadrant (upper left, ...)."""

    LEFT = "on the left"
    RIGHT = "on the right"
    TOP = "at the top"
    BOTTOM = "at the bottom"
    TOP_LEFT = "in the upper left"
    TOP_RIGHT = "in the upper right"
    BOTTOM_LEFT = "in the lower left"
    BOTTOM_RIGHT = "in the lower right"


class Relation(enum.Enum):
    """A spatial relation to a unique anchor object (the phrase comes before the anchor)."""

    LEFT_OF = "left of"
    RIGHT_OF = "right of"
    ABOVE = "above"
    BELOW = "below"
    ON = "on"


class Kind(enum.Enum):
    """How an expression singles out its referent, from easy to hard."""

    CATEGORY = "category"
    COLOUR = "colour"
    GROUP = "group"
    SIZE = "size"
    POSITION = "position"
    RELATION = "relation"


#: Categories that can anchor a relation (long, usually unique features).
ANCHORS: tuple[Category, ...] = (Category.ROAD, Category.RIVER)

_COMPARATIVE = {Size.LARGEST: "larger", Size.SMALLEST: "smaller"}


@dataclass(frozen=True)
class Expression:
    """What a referring expression says, independent of its wording.

    Attributes:
        category: the head noun's category.
        colour: a colour word, or None.
        plural: refers to all matching objects (no modifier allowed).
        size: a size modifier, or None.
        position: a position modifier, or None.
        relation: a relation to ``anchor``, or None.
        anchor: the anchor's category (only with ``relation``).
    """

    category: Category
    colour: Colour | None = None
    plural: bool = False
    size: Size | None = None
    position: Position | None = None
    relation: Relation | None = None
    anchor: Category | None = None

    def __post_init__(self) -> None:
        modifiers = sum(m is not None for m in (self.size, self.position, self.relation))
        if modifiers > 1 or (self.plural and modifiers):
            raise InputError(f"{self} has more than one modifier; use at most one, none if plural")
        if (self.relation is None) != (self.anchor is None):
            raise InputError(f"{self}: a relation needs an anchor and an anchor needs a relation")
        if self.colour is not None and self.colour not in CATEGORY_COLOURS[self.category]:
            valid = ", ".join(c.value for c in CATEGORY_COLOURS[self.category]) or "none"
            raise InputError(
                f"there is no {self.colour.value} {self.category.value}; its colours: {valid}"
            )

    @property
    def kind(self) -> Kind:
        """The hardest ingredient of the expression."""
        if self.relation is not None:
            return Kind.RELATION
        if self.position is not None:
            return Kind.POSITION
        if self.size is not None:
            return Kind.SIZE
        if self.plural:
            return Kind.GROUP
        return Kind.COLOUR if self.colour is not None else Kind.CATEGORY

    def names(self, category: Category, colour: Colour | None) -> bool:
        """Whether an object of this category and colour is a candidate (ignores modifiers)."""
        return category is self.category and (self.colour is None or colour is self.colour)

    def base(self) -> Expression:
        """The same head (category, colour, number) without a modifier."""
        return Expression(self.category, self.colour, self.plural)


def describe(expression: Expression, *, candidates: int, rng: np.random.Generator) -> str:
    """A sentence for ``expression``, with a template and synonyms drawn from ``rng``.

    Args:
        expression: what to say.
        candidates: how many objects share its category and colour (2 gives "larger",
            more gives "largest").
        rng: where the choice of wording comes from.

    Returns:
        A lower-case sentence without final punctuation, e.g. "the red roof left of the road".
    """
    category, colour = expression.category, expression.colour
    if expression.plural:
        nouns = COLOURED_PLURALS.get(category, PLURALS[category]) if colour else PLURALS[category]
        article = ("the", "all", "all the")[int(rng.integers(3))]
    else:
        nouns = COLOURED_NOUNS.get(category, NOUNS[category]) if colour else NOUNS[category]
        article = "the"
    words = [article]
    if expression.size is not None:
        two = candidates == 2
        words.append(_COMPARATIVE[expression.size] if two else expression.size.value)
    if colour is not None:
        words.append(colour.value)
    words.append(nouns[int(rng.integers(len(nouns)))])
    if expression.position is not None:
        words.append(expression.position.value)
    if expression.relation is not None and expression.anchor is not None:
        words += [expression.relation.value, "the", NOUNS[expression.anchor][0]]
    return " ".join(words)


def _noun_table() -> list[tuple[tuple[str, ...], Category, bool]]:
    table = [(tuple(n.split()), c, False) for c, nouns in NOUNS.items() for n in nouns]
    table += [(tuple(n.split()), c, True) for c, nouns in PLURALS.items() for n in nouns]
    return sorted(table, key=lambda row: -len(row[0]))  # longest match first


_NOUN_TABLE = _noun_table()
_SIZES = {s.value: s for s in Size} | {word: s for s, word in _COMPARATIVE.items()}
_COLOURS = {c.value: c for c in Colour}
_POSITIONS = {tuple(p.value.split()): p for p in Position}
_RELATIONS = {tuple(r.value.split()): r for r in Relation}


def _noun_at(words: list[str], i: int) -> tuple[Category, bool, int] | None:
    for tokens, category, plural in _NOUN_TABLE:
        if tuple(words[i : i + len(tokens)]) == tokens:
            return category, plural, i + len(tokens)
    return None


def parse(sentence: str) -> Expression:
    """The :class:`Expression` a sentence of :func:`describe`'s grammar says.

    Raises:
        InputError: the sentence is not in the grammar (the message names the word).
    """
    words = sentence.lower().replace(",", " ").split()
    i = 0
    if words[:2] == ["all", "the"]:
        i = 2
    elif words[:1] in (["all"], ["the"]):
        i = 1
    size = _SIZES.get(words[i]) if i < len(words) else None
    i += size is not None
    colour = _COLOURS.get(words[i]) if i < len(words) else None
    i += colour is not None
    noun = _noun_at(words, i)
    if noun is None:
        got = words[i] if i < len(words) else "(end of sentence)"
        raise InputError(f"cannot read {sentence!r}: expected a noun at {got!r}")
    category, plural, i = noun
    rest = tuple(words[i:])
    position = _POSITIONS.get(rest)
    relation = anchor = None
    if rest and position is None:
        for tokens, candidate in _RELATIONS.items():
            tail = rest[len(tokens) :]
            if rest[: len(tokens)] == tokens and tail[:1] == ("the",):
                found = _noun_at(list(tail), 1)
                if found is not None and found[2] == len(tail) and not found[1]:
                    relation, anchor = candidate, found[0]
                    break
        if relation is None:
            raise InputError(f"cannot read {sentence!r}: unknown phrase {' '.join(rest)!r}")
    return Expression(category, colour, plural, size, position, relation, anchor)
