"""What a vector output looks like: its format (from the name or ``--format``) and its polygons'
filters (``--min-area``, ``--simplify``, ``--holes/--no-holes``)."""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from pathlib import Path

from rasterio.crs import CRS

from diffris.config import Config
from diffris.errors import InputError

__all__ = [
    "VECTOR_EXTENSIONS",
    "AreaUnit",
    "VectorFormat",
    "VectorOptions",
    "is_vector_output",
    "parse_min_area",
    "resolve_vector_format",
]


class VectorFormat(enum.Enum):
    """The vector file format (``--format``, ``--vector-format``)."""

    GPKG = "gpkg"
    PARQUET = "parquet"
    GEOJSON = "geojson"
    FGB = "fgb"


#: Output name endings and the vector format each implies.
VECTOR_EXTENSIONS: dict[str, VectorFormat] = {
    ".gpkg": VectorFormat.GPKG,
    ".parquet": VectorFormat.PARQUET,
    ".geoparquet": VectorFormat.PARQUET,
    ".geojson": VectorFormat.GEOJSON,
    ".fgb": VectorFormat.FGB,
}
#: The extension each format gets when diffris names the file (archive, several scenes).
EXTENSION_OF: dict[VectorFormat, str] = {
    VectorFormat.GPKG: ".gpkg",
    VectorFormat.PARQUET: ".parquet",
    VectorFormat.GEOJSON: ".geojson",
    VectorFormat.FGB: ".fgb",
}


class AreaUnit(enum.Enum):
    """Unit of ``--min-area``: pixels (``50``, ``50px``) or square metres (``50m2``)."""

    PIXELS = "px"
    SQUARE_METRES = "m2"


_AREA = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?P<unit>px|m2|m²)?\s*$")


def parse_min_area(text: str) -> tuple[float, AreaUnit]:
    """Parse ``--min-area``: ``50`` or ``50px`` (pixels), ``50m2`` (square metres).

    Raises:
        InputError: not a non-negative number with an optional ``px``/``m2`` suffix.
    """
    match = _AREA.match(str(text))
    if match is None:
        raise InputError(
            f"--min-area {text!r} is not an area; write pixels (50 or 50px) or square metres (50m2)"
        )
    unit = AreaUnit.PIXELS if match["unit"] in (None, "px") else AreaUnit.SQUARE_METRES
    return float(match["value"]), unit


@dataclass(frozen=True)
class VectorOptions(Config):
    """How masks become polygons.

    Attributes:
        min_area: polygons with fewer mask pixels than this (or a smaller area, see
            ``min_area_unit``) are dropped; 0 keeps all.
        min_area_unit: pixels, or square metres (needs a CRS in metres).
        simplify: Douglas-Peucker tolerance in the CRS's units (topology preserved); 0: the
            exact pixel outlines.
        holes: keep holes; False fills every hole that holds no nodata pixel.
    """

    min_area: float = 0.0
    min_area_unit: AreaUnit = AreaUnit.PIXELS
    simplify: float = 0.0
    holes: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_area) and self.min_area >= 0):
            raise InputError(f"--min-area {self.min_area} must be zero or more; use e.g. 50px")
        if not (math.isfinite(self.simplify) and self.simplify >= 0):
            raise InputError(
                f"--simplify {self.simplify} must be zero or more (CRS units); use e.g. 0.5"
            )

    def min_pixels(self, pixel_area: float, crs: CRS | None) -> float:
        """``min_area`` in pixels for a scene whose pixels cover ``pixel_area`` CRS units².

        Raises:
            InputError: square metres asked of a scene whose CRS is not in metres.
        """
        if self.min_area_unit is AreaUnit.PIXELS or self.min_area == 0:
            return self.min_area
        units = crs.linear_units.lower() if crs is not None and crs.is_projected else None
        if units not in ("metre", "meter", "m"):
            raise InputError(
                f"--min-area {self.min_area:g}m2 needs a CRS in metres; this scene's is "
                f"{crs.to_string() if crs else 'missing'}; give pixels instead (e.g. 50px)"
            )
        return self.min_area / pixel_area


def resolve_vector_format(
    path: str | Path, format: VectorFormat | str | None = None
) -> VectorFormat | None:
    """The vector format of ``path``: ``format`` if it names one, else from the extension.

    Returns:
        None when neither names a vector format (the output is a raster).
    """
    if format is not None:
        try:
            return VectorFormat(format)
        except ValueError:
            return None
    name = Path(path).name.lower()
    for ending, fmt in VECTOR_EXTENSIONS.items():
        if name.endswith(ending):
            return fmt
    return None


def is_vector_output(path: str | Path, format: str | None = None) -> bool:
    """Whether ``path`` (with ``--format``) is a vector output rather than a raster."""
    return resolve_vector_format(path, format) is not None


def require_vector_format(path: str | Path, format: VectorFormat | str | None) -> VectorFormat:
    """Like :func:`resolve_vector_format`, but a name that is no vector format is an error.

    Raises:
        InputError: unknown format or extension; the message lists the valid ones.
    """
    fmt = resolve_vector_format(path, format)
    if fmt is None:
        valid = ", ".join(f.value for f in VectorFormat)
        if format is not None:
            raise InputError(f"--format {format!r} is not a vector format; use one of {valid}")
        raise InputError(
            f"cannot tell the vector format of {path}: use one of the extensions "
            f"{', '.join(VECTOR_EXTENSIONS)} or pass --format ({valid})"
        )
    return fmt
