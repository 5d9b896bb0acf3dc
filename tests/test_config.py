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


@dataclasses.dataclass(frozen=True)
class Typed(Config):
    count: int = 1
    ratio: float = 1.0
    flag: bool = False
    name: str = "a"
    pair: tuple[float, float] = (0.0, 1.0)
    inner: Inner = dataclasses.field(default_factory=Inner)
    limit: int | None = None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"count": "sixty-four"}, "count must be an integer, got 'sixty-four' (a str)"),
        ({"count": True}, "count must be an integer, got True (a bool)"),
        ({"count": 1.5}, "count must be an integer, got 1.5 (a float)"),
        ({"ratio": "fast"}, "ratio must be a number, got 'fast' (a str)"),
        ({"ratio": "1"}, "ratio must be a number, got '1' (a str)"),
        ({"ratio": False}, "ratio must be a number"),
        ({"flag": 1}, "flag must be true or false, got 1 (a int)"),
        ({"name": ["a"]}, "name must be a string, got ['a'] (a list)"),
        ({"pair": [1.0]}, "pair must be a list of 2 values, got 1"),
        ({"pair": [1.0, "x"]}, "pair[1] must be a number, got 'x'"),
        ({"pair": 3}, "pair must be a list, got 3"),
        ({"inner": [1]}, "inner must be a mapping of options, got [1] (a list)"),
        ({"inner": {"depth": "deep"}}, "inner.depth must be an integer, got 'deep'"),
        ({"limit": "none"}, "limit must be an integer"),
        ({"count": "x" * 10_000}, "count must be an integer, got 'xxxxxxxxxx"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_field_and_the_type(values, expected):
    with pytest.raises(InputError) as caught:
        Typed.from_dict(values)
    message = str(caught.value)
    assert expected in message
    assert len(message) < 200  # the value is quoted, cut


def test_plain_values_convert_to_the_field_types():
    typed = Typed.from_dict({"count": 3.0, "ratio": 2, "pair": [1, 2], "limit": None})
    assert (typed.count, typed.ratio, typed.pair, typed.limit) == (3, 2.0, (1.0, 2.0), None)
    # YAML 1.1 (PyYAML) reads "5e-5" as a string; it is the number its writer meant
    assert Typed.from_dict({"ratio": "5e-5"}).ratio == 5e-5
    assert isinstance(typed.ratio, float) and isinstance(typed.count, int)


def test_a_config_that_is_not_a_mapping_is_refused():
    with pytest.raises(InputError, match=r"Typed must be a mapping of options, got \[1, 2\]"):
        Typed.from_dict([1, 2])  # type: ignore[arg-type]
