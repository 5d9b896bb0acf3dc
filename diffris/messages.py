"""Quoting user input in error messages without letting it grow the message.

An error line quotes the offending value so the user can find it, but the value is untrusted: a
352-byte YAML alias bomb expands to hundreds of megabytes, and ``repr`` of it would be the
message. :func:`cut` bounds the work and the length: containers are summarised by
:mod:`reprlib` (never fully walked), and the result is cut to ``limit`` characters.
"""

from __future__ import annotations

import reprlib

__all__ = ["clip", "cut"]

#: Characters of a quoted value kept in a message.
LIMIT = 80

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = LIMIT
_REPR.maxother = LIMIT
_REPR.maxlong = 40
for _name in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset", "maxdeque"):
    setattr(_REPR, _name, 4)


def cut(value: object, limit: int = LIMIT) -> str:
    """``repr(value)``, at most ``limit`` characters (``…`` marks a cut), in bounded time.

    Args:
        value: anything read from a user's file or flag.
        limit: the most characters returned.

    Returns:
        The quoted value, e.g. ``'sixty-four'`` or ``'aaaaaaaa…'`` or ``[[...], [...], ...]``.
    """
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]  # reprlib would keep its tail too; the head is what users look for
        text = repr(value)[:-1]
        return text[: limit - 1] + "…"
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: str, limit: int = LIMIT) -> str:
    """``text`` itself (not quoted), at most ``limit`` characters, ``…`` marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
