import dataclasses
import enum

import pytest

from diffris.config import Config
from diffris.errors import InputError


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclasses.dataclass(frozen=True)
class Inner(Config):
    depth: int = 1


@dataclasses.dataclass(frozen=True)
class Outer(Config):
    mode: Mode = Mode.FAST
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = dataclasses.field(default_factory=Inner)
    scale: float | None = None


def test_round_trip_through_plain_values():
    config = Outer(mode=Mode.SLOW, sizes=(3, 4, 5), inner=Inner(depth=2), scale=0.5)
    plain = config.to_dict()
    assert plain == {"mode": "slow", "sizes": [3, 4, 5], "inner": {"depth": 2}, "scale": 0.5}
    assert Outer.from_dict(plain) == config


def test_unknown_keys_and_bad_enum_values_are_refused():
    with pytest.raises(InputError, match="unknown Outer option\\(s\\): colour"):
        Outer.from_dict({"colour": "red"})
    with pytest.raises(InputError, match="'medium' is not a valid Mode; valid: fast, slow"):
        Outer.from_dict({"mode": "medium"})
    assert Outer().replace(scale=2.0).scale == 2.0
