"""Frozen dataclass configs that round-trip through JSON and reject unknown keys.

diffusers' ``register_to_config`` idea without its machinery: a config is plain values, saved
next to the weights, and ``from_dict`` refuses keys it does not know so that a typo or a config
from a newer version fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import enum
import numbers
import re
import types
import typing
from typing import Any, Self

from diffris.errors import InputError
from diffris.messages import clip, cut


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of every config. Subclasses are ``@dataclass(frozen=True)``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (enums as their values, nested configs as dicts)."""
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from :meth:`to_dict` output, checking every value against its field's type.

        Raises:
            InputError: ``values`` is not a mapping, holds an unknown key, or a value of the wrong
                type (the message names the field, the value and the expected type).
        """
        return _build(cls, values, cls.__name__)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (checked like :meth:`from_dict`)."""
        return type(self).from_dict({**self.to_dict(), **changes})


_C = typing.TypeVar("_C", bound=Config)

#: A number written in exponent form without a dot (``lr: 5e-5``): YAML 1.1, which PyYAML reads,
#: makes it a string, but whoever wrote it meant the number.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def check_at_most(title: str, config: Any, limits: dict[str, float]) -> None:
    """Refuse sizes so large that building the model would exhaust memory.

    Args:
        title: what the config configures, in messages (``PCMRD``).
        config: the config instance.
        limits: field name -> the largest value accepted.

    Raises:
        InputError: a field exceeds its limit (naming field, value and limit).
    """
    for name, limit in limits.items():
        value = getattr(config, name)
        if value is not None and not value <= limit:  # NaN fails too
            raise InputError(
                f"{title} {name}={cut(value)} must be a number no larger than {limit:g} "
                "(a model that large would not fit in memory); is it a typo?"
            )


def _build(cls: type[_C], values: Any, where: str) -> _C:
    if not isinstance(values, dict):
        raise InputError(f"{where} must be a mapping of options, got {_kind(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(values) - set(fields))
    if unknown:
        raise InputError(
            f"unknown {cls.__name__} option(s): {clip(', '.join(unknown))}; "
            f"valid: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    prefix = "" if where == cls.__name__ else f"{where}."
    return cls(
        **{name: _from_plain(hints[name], value, prefix + name) for name, value in values.items()}
    )


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


def _kind(value: Any) -> str:
    return f"{cut(value)} (a {type(value).__name__})"


def _from_plain(hint: Any, value: Any, field: str) -> Any:
    """``value`` as the type ``hint`` of ``field`` (a dotted name for messages), checked."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _from_plain(options[0], value, field) if len(options) == 1 else value
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{field} must be true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InputError(f"{field} must be an integer, got {_kind(value)}")
        return int(value)
    if hint is float:
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InputError(f"{field} must be a number, got {_kind(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"{field} must be a string, got {_kind(value)}")
        return value
    if isinstance(hint, type) and issubclass(hint, Config):
        if isinstance(value, hint):
            return value
        return _build(hint, value, field)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)
        except (ValueError, TypeError) as err:
            valid = ", ".join(str(member.value) for member in hint)
            raise InputError(
                f"{field}: {cut(value)} is not a valid {hint.__name__}; valid: {valid}"
            ) from err
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"{field} must be a list, got {_kind(value)}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(
                _from_plain(args[0], item, f"{field}[{k}]") for k, item in enumerate(value)
            )
        if len(value) != len(args):
            raise InputError(
                f"{field} must be a list of {len(args)} values, got {len(value)}: {cut(value)}"
            )
        return tuple(
            _from_plain(arg, item, f"{field}[{k}]")
            for k, (arg, item) in enumerate(zip(args, value, strict=True))
        )
    return value
