"""Small converters from flag strings to library values, with one-line errors."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from diffris.errors import InputError
from diffris.messages import cut

if TYPE_CHECKING:
    from diffris.inference.feature_cache import FeatureCacheOptions

E = TypeVar("E", bound=enum.Enum)


def parse_enum(kind: type[E], value: str, flag: str) -> E:
    """``value`` as a member of ``kind``, or an error listing the valid values."""
    try:
        return kind(value.lower())
    except ValueError:
        valid = ", ".join(str(member.value) for member in kind)
        raise InputError(f"{flag} {cut(value)} is not one of: {valid}") from None


def parse_numbers(value: str | None, flag: str, *, count: tuple[int, ...], kind: type = float):
    """``"4,3,2"`` → ``(4, 3, 2)``; the number of values must be in ``count``."""
    if value is None:
        return None
    try:
        numbers = tuple(kind(part) for part in value.replace(" ", "").split(","))
    except ValueError:
        raise InputError(
            f"{flag} {cut(value)} is not a comma-separated list of numbers, e.g. "
            f"{flag} {'4,3,2' if kind is int else '0,3000'}"
        ) from None
    if len(numbers) not in count:
        expected = " or ".join(str(c) for c in count)
        raise InputError(f"{flag} {cut(value)} has {len(numbers)} values; give {expected}")
    return numbers


def segment_options(
    *,
    tile: int,
    overlap: int,
    batch_size: int,
    threshold: float,
    output_type: str,
    dtype: str | None,
    output_format: str | None,
    bands: str | None,
    nodata: float | None,
    stretch: str | None,
    creation_options: list[str] | None,
):  # type: ignore[no-untyped-def]
    """The :class:`~diffris.inference.segment.SegmentOptions` the scene flags describe."""
    from diffris.geo.sinks.spec import OutputDtype, OutputFormat, OutputType
    from diffris.inference.segment import SegmentOptions

    return SegmentOptions(
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        threshold=threshold,
        output_type=parse_enum(OutputType, output_type, "--output-type"),
        dtype=parse_enum(OutputDtype, dtype, "--dtype") if dtype else None,
        format=parse_enum(OutputFormat, output_format, "--format") if output_format else None,
        bands=parse_numbers(bands, "--bands", count=(1, 3), kind=int),
        nodata=nodata,
        stretch=parse_numbers(stretch, "--stretch", count=(2,)),
        creation_options=tuple(creation_options or ()),
    )


def vector_options(*, min_area: str | None, simplify: float, holes: bool):  # type: ignore[no-untyped-def]
    """The :class:`~diffris.geo.vector.options.VectorOptions` the polygon flags describe."""
    from diffris.geo.vector.options import VectorOptions, parse_min_area

    area, unit = parse_min_area(min_area) if min_area is not None else (0.0, None)
    values = {"min_area": area, "simplify": simplify, "holes": holes}
    return VectorOptions(**values, **({"min_area_unit": unit} if unit else {}))


def vector_format(value: str | None, flag: str):  # type: ignore[no-untyped-def]
    """``--vector-format`` as a :class:`~diffris.geo.vector.options.VectorFormat`, or None."""
    from diffris.geo.vector.options import VectorFormat

    return parse_enum(VectorFormat, value, flag) if value else None


def feature_cache_options(
    folder: Path | None, size: str | None, dtype: str | None
) -> FeatureCacheOptions | None:
    """``--feature-cache`` and its size and dtype as library options; None without a folder.

    Raises:
        InputError: a size or dtype without a folder, or a bad size or dtype.
    """
    from diffris.inference.feature_cache import CacheDtype, FeatureCacheOptions
    from diffris.inference.memory import parse_size

    if folder is None:
        for flag, value in (("--feature-cache-size", size), ("--feature-cache-dtype", dtype)):
            if value is not None:
                raise InputError(f"{flag} applies to a feature cache; add --feature-cache DIR")
        return None
    values: dict[str, Any] = {"folder": str(Path(folder).expanduser().absolute())}
    if size is not None:
        values["max_bytes"] = parse_size(size, "--feature-cache-size")
    if dtype is not None:
        values["dtype"] = parse_enum(CacheDtype, dtype, "--feature-cache-dtype")
    return FeatureCacheOptions(**values)
