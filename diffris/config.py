"""Frozen dataclass configs that round-trip through JSON and reject unknown keys.

diffusers' ``register_to_config`` idea without its machinery: a config is plain values, saved
next to the weights, and ``from_dict`` refuses keys it does not know so that a typo or a config
from a newer version fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Self

from diffris.errors import InputError


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of every config. Subclasses are ``@dataclass(frozen=True)``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (enums as their values, nested configs as dicts)."""
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`InputError`."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise InputError(
                f"unknown {cls.__name__} option(s): {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(fields))}"
            )
        hints = typing.get_type_hints(cls)
        return cls(**{name: _from_plain(hints[name], value) for name, value in values.items()})

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (checked like :meth:`from_dict`)."""
        return type(self).from_dict({**self.to_dict(), **changes})


def _to_plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    return value


def _from_plain(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _from_plain(options[0], value) if len(options) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
        return hint.from_dict(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum) and not isinstance(value, hint):
        try:
            return hint(value)
        except ValueError as err:
            valid = ", ".join(str(member.value) for member in hint)
            raise InputError(f"{value!r} is not a valid {hint.__name__}; valid: {valid}") from err
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], item) for item in value)
        return tuple(_from_plain(arg, item) for arg, item in zip(args, value, strict=True))
    return value
