"""Generate one synthetic aerial image with several unambiguous referrals.

The image is planned (:mod:`~diffris.data.synthetic.layout`), rendered
(:mod:`~diffris.data.synthetic.render`), its visible objects extracted, and every expression of the
grammar that resolves to exactly one object (or one group) is collected
(:func:`~diffris.data.synthetic.matcher.options`). Referrals to *different* targets are then drawn
from those, mixing easy ones (category, colour, plural) with hard ones (size, position, relation):
the same image with different sentences and different masks is what makes the text necessary.
"""

from __future__ import annotations

import math

import numpy as np

from diffris.data.synthetic import matcher
from diffris.data.synthetic.expressions import Kind, describe
from diffris.data.synthetic.layout import REFERENCE_SIZE, plan_image_bands, plan_objects
from diffris.data.synthetic.objects import Referral, SceneObject, SyntheticImage
from diffris.data.synthetic.render import Shape, render
from diffris.errors import InputError

#: Expression kinds that count as easy (a category or colour word is enough).
EASY_KINDS = frozenset({Kind.CATEGORY, Kind.COLOUR, Kind.GROUP})
#: Smallest image side accepted, in px.
MIN_SIZE = 64
_ATTEMPTS = 50


def as_rng(seed: int | np.random.Generator) -> np.random.Generator:
    """A generator from a seed, or the generator itself (never the global numpy RNG)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed {seed!r} is not a non-negative integer; use e.g. 0")
    return np.random.default_rng(int(seed))


def extract_objects(shapes: list[Shape], top: np.ndarray) -> list[SceneObject]:
    """The visible objects of a rendered image, in shape order.

    Args:
        shapes: the image's shapes (global coordinates = image coordinates).
        top: (H, W) int32 index of the visible shape per pixel, -1 for ground.

    Returns:
        One :class:`SceneObject` per shape with at least one visible pixel.
    """
    height, width = top.shape
    objects = []
    for i, shape in enumerate(shapes):
        mask = top == i
        if not mask.any():
            continue
        footprint = np.zeros_like(mask)
        x0, y0, x1, y1 = shape.geometry.bounds()
        c0, c1 = max(0, math.floor(x0)), min(width, math.ceil(x1))
        r0, r1 = max(0, math.floor(y0)), min(height, math.ceil(y1))
        xs, ys = np.arange(c0, c1) + 0.5, np.arange(r0, r1) + 0.5
        footprint[r0:r1, c0:c1] = shape.geometry.sample(xs, ys).depth >= 0
        objects.append(SceneObject.from_masks(shape.category, shape.colour, mask, footprint))
    return objects


def _choose(
    rng: np.random.Generator, found: list[matcher.Option], count: int, easy_fraction: float
) -> list[matcher.Option]:
    """Up to ``count`` options with different targets: easy or hard by ``easy_fraction``, then a
    kind uniformly among those available (so relations are not drowned by positions)."""
    pools: dict[Kind, list[matcher.Option]] = {}
    for k in rng.permutation(len(found)):
        pools.setdefault(found[k].expression.kind, []).append(found[k])
    used: set[tuple[int, ...]] = set()
    picked: list[matcher.Option] = []
    while len(picked) < count and pools:
        easy = [kind for kind in Kind if kind in pools and kind in EASY_KINDS]
        hard = [kind for kind in Kind if kind in pools and kind not in EASY_KINDS]
        kinds = easy if easy and (not hard or rng.random() < easy_fraction) else hard
        kind = kinds[int(rng.integers(len(kinds)))]
        option = pools[kind].pop()
        if not pools[kind]:
            del pools[kind]
        if option.indices in used or (
            kind is Kind.GROUP and any(p.expression.plural for p in picked)
        ):
            continue  # a different target each time, and at most one plural per image
        used.add(option.indices)
        picked.append(option)
    return picked


def generate_image(
    seed: int | np.random.Generator,
    size: int = 512,
    *,
    max_referrals: int = 4,
    min_area_fraction: float = 0.005,
    easy_fraction: float = 0.5,
    object_scale: float | None = None,
) -> SyntheticImage:
    """One aerial-looking image with up to ``max_referrals`` referrals to different targets.

    Args:
        seed: a seed or a generator; the same seed gives the same image, bit for bit.
        size: image side in px (>= 64). Objects scale with it (reference 512 px).
        max_referrals: referrals per image, each to a different object or group.
        min_area_fraction: a referred mask covers at least this fraction of the image.
        easy_fraction: probability that a referral is category/colour/plural rather than
            size/position/relation based (when both are possible).
        object_scale: size of the objects relative to a 512 px reference image; None =
            ``size / 512`` (the same kind of scene at any resolution). 1.0 draws them at their
            native size whatever ``size`` is, as in a ``size`` px tile of a large scene.

    Returns:
        The image, its objects, and 1..max_referrals referrals.

    Raises:
        InputError: a bad size, count, fraction or seed.
    """
    if size < MIN_SIZE:
        raise InputError(f"image size {size} px is too small; use at least {MIN_SIZE}, e.g. 512")
    if max_referrals < 1:
        raise InputError(f"max_referrals {max_referrals} must be at least 1")
    if not 0.0 <= min_area_fraction < 0.5:
        raise InputError(f"min_area_fraction {min_area_fraction} must lie in [0, 0.5)")
    if not 0.0 <= easy_fraction <= 1.0:
        raise InputError(f"easy_fraction {easy_fraction} must lie in [0, 1]")
    if object_scale is not None and not 0.0 < object_scale <= 4.0:
        raise InputError(f"object_scale {object_scale} must lie in (0, 4]; e.g. 1.0")
    rng = as_rng(seed)
    scale = size / REFERENCE_SIZE if object_scale is None else object_scale
    min_area = math.ceil(min_area_fraction * size * size)
    for _ in range(_ATTEMPTS):
        bands = plan_image_bands(rng, size, scale)
        shapes = bands + plan_objects(
            rng, x0=0, y0=0, width=size, height=size, scale=scale, bands=bands, edge=2.0
        )
        texture_seed = int(rng.integers(1 << 32))
        rendered = render(
            shapes, x0=0, y0=0, width=size, height=size, seed=texture_seed, scale=scale
        )
        objects = extract_objects(shapes, rendered.top)
        found = matcher.options(objects, (size, size), min_area=min_area)
        picked = _choose(rng, found, max_referrals, easy_fraction)
        if not picked:
            continue
        referrals = []
        for option in picked:
            head = option.expression.base()
            n = len(matcher.candidates(head, objects))
            sentence = describe(option.expression, candidates=n, rng=rng)
            mask = np.logical_or.reduce([objects[i].mask for i in option.indices])
            referrals.append(Referral(sentence, option.expression, option.indices, mask))
        return SyntheticImage(rendered.rgb, objects, referrals)
    raise RuntimeError(f"no referrable object in {_ATTEMPTS} layouts of {size} px; a bug")
