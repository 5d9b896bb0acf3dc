"""Decide what an expression refers to among an image's objects.

Each object gets a three-valued verdict: YES, NO or UNCLEAR (e.g. two ponds of almost equal
size for "the larger pond", a car straddling the middle line for "the car in the upper left").
An expression *resolves* only if no candidate is UNCLEAR and exactly one object is YES (at least
two for a plural); the generator keeps only expressions that resolve to the object it meant, and
the tests re-run the same function on the parsed sentence.

Margins are fractions of the image side so that the rules hold at every image size.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from diffris.data.synthetic.expressions import (
    ANCHORS,
    Expression,
    Position,
    Relation,
    Size,
)
from diffris.data.synthetic.objects import SceneObject
from diffris.data.synthetic.vocab import CATEGORY_COLOURS, Category

#: The extreme object must lead the runner-up by this fraction of the image side.
EXTREME_MARGIN = 0.08
#: A quadrant's object must be this fraction of the image side away from both middle lines.
QUADRANT_MARGIN = 0.05
#: "The largest" must be this many times larger than the runner-up (visible area).
SIZE_RATIO = 1.5
#: "On the road": at least this share of the visible pixels on the anchor (NO below ON_NO).
ON_YES, ON_NO = 0.6, 0.1


class Truth(enum.Enum):
    """Whether an object satisfies an expression."""

    YES = "yes"
    NO = "no"
    UNCLEAR = "unclear"


@dataclass(frozen=True)
class Option:
    """An expression that resolves, and the object indices it resolves to."""

    expression: Expression
    indices: tuple[int, ...]


def candidates(expression: Expression, objects: Sequence[SceneObject]) -> list[int]:
    """Indices of the objects of the expression's category and colour."""
    return [i for i, o in enumerate(objects) if expression.names(o.category, o.colour)]


def evaluate(
    expression: Expression, objects: Sequence[SceneObject], image_shape: tuple[int, int]
) -> list[Truth]:
    """Each object's verdict for ``expression``.

    Args:
        expression: what is said.
        objects: every visible object of the image.
        image_shape: (H, W) in px.

    Returns:
        One :class:`Truth` per object.
    """
    truths = [Truth.NO] * len(objects)
    found = candidates(expression, objects)
    if expression.size is not None:
        verdicts = _size(expression.size, [objects[i] for i in found])
    elif expression.position is not None:
        verdicts = _position(expression.position, [objects[i] for i in found], image_shape)
    elif expression.relation is not None and expression.anchor is not None:
        verdicts = _relation(expression, [objects[i] for i in found], objects)
    else:
        verdicts = [Truth.YES] * len(found)
    for i, verdict in zip(found, verdicts, strict=True):
        truths[i] = verdict
    return truths


def resolve(
    expression: Expression, objects: Sequence[SceneObject], image_shape: tuple[int, int]
) -> tuple[int, ...]:
    """The object indices ``expression`` unambiguously refers to, or () if it does not.

    Singular: exactly one YES. Plural: two or more YES. Either way, no UNCLEAR.
    """
    truths = evaluate(expression, objects, image_shape)
    if Truth.UNCLEAR in truths:
        return ()
    yes = tuple(i for i, truth in enumerate(truths) if truth is Truth.YES)
    wanted = len(yes) >= 2 if expression.plural else len(yes) == 1
    return yes if wanted else ()


def _size(size: Size, found: list[SceneObject]) -> list[Truth]:
    if len(found) < 2:
        return [Truth.NO] * len(found)
    sign = -1 if size is Size.LARGEST else 1
    order = sorted(range(len(found)), key=lambda k: (sign * found[k].area, k))
    first, second = found[order[0]].area, found[order[1]].area
    big, small = max(first, second), min(first, second)
    verdicts = [Truth.NO] * len(found)
    if big >= SIZE_RATIO * small:
        verdicts[order[0]] = Truth.YES
    else:
        verdicts[order[0]] = verdicts[order[1]] = Truth.UNCLEAR
    return verdicts


_EXTREMES = {
    Position.LEFT: (0, 1.0),
    Position.RIGHT: (0, -1.0),
    Position.TOP: (1, 1.0),
    Position.BOTTOM: (1, -1.0),
}
_QUADRANTS = {
    Position.TOP_LEFT: (-1, -1),
    Position.TOP_RIGHT: (1, -1),
    Position.BOTTOM_LEFT: (-1, 1),
    Position.BOTTOM_RIGHT: (1, 1),
}


def _position(
    position: Position, found: list[SceneObject], image_shape: tuple[int, int]
) -> list[Truth]:
    height, width = image_shape
    verdicts = [Truth.NO] * len(found)
    if position in _EXTREMES:
        axis, sign = _EXTREMES[position]
        side = (width, height)[axis]
        key = [sign * o.centroid[axis] for o in found]
        order = sorted(range(len(found)), key=lambda k: (key[k], k))
        if not order:
            return verdicts
        first = order[0]
        # It must be on that side of the image at all, and clearly ahead of the runner-up.
        if sign * (found[first].centroid[axis] - side / 2) >= 0:
            return verdicts
        if len(order) > 1 and key[order[1]] - key[first] < EXTREME_MARGIN * side:
            verdicts[first] = verdicts[order[1]] = Truth.UNCLEAR
        else:
            verdicts[first] = Truth.YES
        return verdicts
    sx, sy = _QUADRANTS[position]
    mx, my = QUADRANT_MARGIN * width, QUADRANT_MARGIN * height
    for k, o in enumerate(found):
        dx, dy = sx * (o.centroid[0] - width / 2), sy * (o.centroid[1] - height / 2)
        if dx >= mx and dy >= my:
            verdicts[k] = Truth.YES
        elif dx > -mx and dy > -my:
            verdicts[k] = Truth.UNCLEAR
    return verdicts


def _relation(
    expression: Expression, found: list[SceneObject], objects: Sequence[SceneObject]
) -> list[Truth]:
    anchors = [o for o in objects if o.category is expression.anchor]
    if len(anchors) != 1 or expression.category is expression.anchor:
        return [Truth.UNCLEAR] * len(found)
    anchor = anchors[0].footprint
    return [_related(expression.relation, o, anchor) for o in found]  # type: ignore[arg-type]


def _related(relation: Relation, o: SceneObject, anchor: np.ndarray) -> Truth:
    on = float((o.mask & anchor).sum()) / max(o.area, 1)
    if relation is Relation.ON:
        return Truth.YES if on >= ON_YES else Truth.NO if on <= ON_NO else Truth.UNCLEAR
    if on >= ON_YES:
        return Truth.NO  # on the anchor, so neither beside nor above it
    if on > 0:
        return Truth.UNCLEAR
    x1, y1, x2, y2 = o.bbox
    horizontal = relation in (Relation.LEFT_OF, Relation.RIGHT_OF)
    # The anchor's extent across the object's band of rows (or columns).
    hits = anchor[y1:y2].any(axis=0) if horizontal else anchor[:, x1:x2].any(axis=1)
    where = np.nonzero(hits)[0]
    if where.size == 0:
        return Truth.NO
    lo, hi = int(where[0]), int(where[-1]) + 1
    start, stop = (x1, x2) if horizontal else (y1, y2)
    before, after = stop <= lo, start >= hi
    if not (before or after):
        return Truth.UNCLEAR  # the anchor bends around it
    wants_before = relation in (Relation.LEFT_OF, Relation.ABOVE)
    return Truth.YES if before == wants_before else Truth.NO


def options(
    objects: Sequence[SceneObject], image_shape: tuple[int, int], *, min_area: int
) -> list[Option]:
    """Every expression of the grammar that resolves to objects covering ``min_area`` px or more.

    Modifiers (size, position, relation) are tried only where the bare head is not unique, so
    they are always needed; sizes and positions only for compact objects (not roads or rivers).
    """
    present = {o.category for o in objects}
    found: list[Option] = []
    for category in Category:
        if category not in present:
            continue
        colours = [None, *(c for c in CATEGORY_COLOURS[category] if _has(objects, category, c))]
        for colour in colours:
            head = Expression(category, colour)
            exprs = [head, Expression(category, colour, plural=True)]
            if len(candidates(head, objects)) >= 2:
                if category not in ANCHORS:
                    exprs += [Expression(category, colour, size=s) for s in Size]
                    exprs += [Expression(category, colour, position=p) for p in Position]
                for anchor in ANCHORS:
                    if anchor is not category and anchor in present:
                        exprs += [
                            Expression(category, colour, relation=r, anchor=anchor)
                            for r in Relation
                        ]
            for expression in exprs:
                indices = resolve(expression, objects, image_shape)
                if indices and sum(objects[i].area for i in indices) >= min_area:
                    found.append(Option(expression, indices))
    return found


def _has(objects: Sequence[SceneObject], category: Category, colour: object) -> bool:
    return any(o.category is category and o.colour is colour for o in objects)
