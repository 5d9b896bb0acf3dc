"""Small converters from flag strings to library values, with one-line errors."""

from __future__ import annotations

import enum
from typing import TypeVar

from diffris.errors import InputError

E = TypeVar("E", bound=enum.Enum)


def parse_enum(kind: type[E], value: str, flag: str) -> E:
    """``value`` as a member of ``kind``, or an error listing the valid values."""
    try:
        return kind(value.lower())
    except ValueError:
        valid = ", ".join(str(member.value) for member in kind)
        raise InputError(f"{flag} {value!r} is not one of: {valid}") from None


def parse_numbers(value: str | None, flag: str, *, count: tuple[int, ...], kind: type = float):
    """``"4,3,2"`` → ``(4, 3, 2)``; the number of values must be in ``count``."""
    if value is None:
        return None
    try:
        numbers = tuple(kind(part) for part in value.replace(" ", "").split(","))
    except ValueError:
        raise InputError(
            f"{flag} {value!r} is not a comma-separated list of numbers, e.g. "
            f"{flag} {'4,3,2' if kind is int else '0,3000'}"
        ) from None
    if len(numbers) not in count:
        expected = " or ".join(str(c) for c in count)
        raise InputError(f"{flag} {value!r} has {len(numbers)} values; give {expected}")
    return numbers
