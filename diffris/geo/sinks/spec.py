"""What an output looks like: size, georeferencing, prompts, encoding, and format options.

The encoding contract between the stitcher and the sinks lives here, so they cannot drift apart
(:meth:`OutputSpec.encode` implements it):

- ``mask``, uint8: 1 where ``probability >= threshold`` else 0; nodata 255.
- ``prob``, uint8: ``round(probability * 254)``, so 0..254; nodata 255.
- ``prob``, float32: the probability in [0, 1]; nodata NaN.

uint8 probabilities use 0..254 so that 255 stays free for nodata; the scale ``1/254`` is written
as the band scale (GeoTIFF) and ``scale_factor`` (Zarr), so GDAL, rasterio and xarray can decode
them back to probabilities.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from diffris.data.prompts import Prompt
from diffris.errors import InputError

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_THRESHOLD",
    "MASK_NODATA",
    "PROB_UINT8_NODATA",
    "PROB_UINT8_SCALE",
    "OutputDtype",
    "OutputFormat",
    "OutputSpec",
    "OutputType",
    "parse_creation_options",
    "shift_gcps",
]

DEFAULT_BLOCK_SIZE = 512
#: Probability at or above which a pixel is in the mask, for prompts without their own threshold.
DEFAULT_THRESHOLD = 0.5
MASK_NODATA = 255
PROB_UINT8_NODATA = 255
#: uint8 probabilities are stored as ``round(p * 254)``.
PROB_UINT8_SCALE = 254
#: GeoTIFF tiles must be multiples of 16 px (a TIFF rule).
BLOCK_MULTIPLE = 16
_OPTION_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class OutputType(enum.Enum):
    """What each band holds (``--output-type``)."""

    MASK = "mask"
    PROB = "prob"


class OutputDtype(enum.Enum):
    """The stored data type (``--dtype``); masks are always uint8."""

    UINT8 = "uint8"
    FLOAT32 = "float32"


class OutputFormat(enum.Enum):
    """The file format (``--format``; by default from the output's extension)."""

    GTIFF = "gtiff"
    COG = "cog"
    ZARR = "zarr"


@dataclass(frozen=True)
class OutputSpec:
    """Everything a sink needs to know before the first row arrives.

    Not a :class:`~diffris.config.Config`: it carries a rasterio ``CRS`` and an ``Affine``, which
    are not plain JSON values; it is built by the orchestrator from the scene and the flags.

    Attributes:
        width: raster width in pixels.
        height: raster height in pixels.
        crs: the scene's CRS, or ``None`` for a raster without one.
        transform: pixel-corner affine transform (rasterio convention).
        prompts: one band / Zarr layer per prompt, in this order. ``(id, text)`` or
            ``(id, text, threshold)`` tuples are converted to :class:`Prompt`.
        output_type: mask or probability.
        dtype: stored type; ``None`` means uint8. float32 is for probabilities only.
        nodata: stored value for pixels without data; ``None`` means the table above.
        threshold: mask threshold for prompts without their own, in (0, 1).
        block_size: tile / chunk edge in pixels (the grid stride); a multiple of 16.
        tags: dataset metadata (model id, thresholds, tile, overlap, stretch, version).
        creation_options: format options from ``--co KEY=VALUE``; keys upper-cased.
        gcps: ``(points, crs)`` ground control points (rasterio ``GroundControlPoint``) for an
            output georeferenced by GCPs instead of ``crs`` + ``transform`` (which must then be
            None and the identity); row/col are output pixels. GeoTIFF/COG only.
    """

    width: int
    height: int
    crs: CRS | None
    transform: Affine
    prompts: Sequence[Prompt]
    output_type: OutputType = OutputType.MASK
    dtype: OutputDtype | None = None
    nodata: float | None = None
    threshold: float = DEFAULT_THRESHOLD
    block_size: int = DEFAULT_BLOCK_SIZE
    tags: Mapping[str, str] = field(default_factory=dict)
    creation_options: Mapping[str, str] = field(default_factory=dict)
    gcps: tuple[Sequence[GroundControlPoint], CRS | None] | None = None

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"output {name} {value!r} must be a positive number of pixels")
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "output_type", OutputType(self.output_type))
        set_(self, "prompts", _to_prompts(self.prompts))
        dtype = _resolve_dtype(self.output_type, self.dtype)
        set_(self, "dtype", dtype)
        set_(self, "nodata", _resolve_nodata(self.output_type, dtype, self.nodata))
        if not isinstance(self.transform, Affine):
            raise InputError(f"transform must be an affine.Affine, got {self.transform!r}")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"--threshold {self.threshold} is not in (0, 1); use e.g. 0.5")
        if self.block_size < BLOCK_MULTIPLE or self.block_size % BLOCK_MULTIPLE:
            raise InputError(
                f"output block size {self.block_size} px is not a positive multiple of "
                f"{BLOCK_MULTIPLE}; use e.g. {DEFAULT_BLOCK_SIZE}"
            )
        set_(self, "tags", MappingProxyType(_check_tags(self.tags)))
        if self.gcps is not None:
            points, gcp_crs = self.gcps
            if not points or self.crs is not None or not self.transform.is_identity:
                raise InputError(
                    "GCP georeferencing needs at least one GCP, and no crs or transform besides"
                )
            set_(self, "gcps", (tuple(points), gcp_crs))
        options = _check_options(self.creation_options)
        set_(self, "creation_options", MappingProxyType(options))

    @property
    def count(self) -> int:
        """Number of bands (prompts)."""
        return len(self.prompts)

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The stored numpy dtype."""
        return np.dtype(OutputDtype(self.dtype).value)

    @property
    def scale(self) -> float | None:
        """Factor that turns stored values into probabilities (uint8 prob only), else None."""
        if self.output_type is OutputType.PROB and self.dtype is OutputDtype.UINT8:
            return 1.0 / PROB_UINT8_SCALE
        return None

    def thresholds(self) -> list[float]:
        """The effective mask threshold of each prompt, in band order."""
        return [p.threshold if p.threshold is not None else self.threshold for p in self.prompts]

    def encode(self, prob: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Encode probabilities as this output stores them (see the module table).

        Args:
            prob: (P, rows, width) float probabilities in [0, 1].
            valid: (rows, width) bool, False where the scene has no data; None if all valid.

        Returns:
            (P, rows, width) array of :attr:`numpy_dtype`.
        """
        prob = np.asarray(prob, dtype=np.float32)
        if prob.ndim != 3 or prob.shape[0] != self.count:
            raise ValueError(
                f"expected ({self.count}, rows, width) probabilities, got {prob.shape}"
            )
        if self.output_type is OutputType.MASK:
            thresholds = np.asarray(self.thresholds(), dtype=np.float32)[:, None, None]
            out = (prob >= thresholds).astype(np.uint8)
        elif self.dtype is OutputDtype.UINT8:
            out = np.rint(np.clip(prob, 0.0, 1.0) * PROB_UINT8_SCALE).astype(np.uint8)
        else:
            out = np.clip(prob, 0.0, 1.0)
        if valid is not None:
            # copyto, not out[:, ~valid] = ...: boolean indexing builds two int64 index arrays
            # of the nodata pixels, 16 bytes a pixel (360 MiB for a mostly empty 50,000-px band)
            invalid = np.logical_not(np.asarray(valid, dtype=bool))
            np.copyto(out, float(self.nodata), where=invalid, casting="unsafe")  # type: ignore[arg-type]
        return out


def parse_creation_options(items: Iterable[str]) -> dict[str, str]:
    """Parse ``--co KEY=VALUE`` strings.

    Raises:
        InputError: an item is not ``KEY=VALUE`` or a key repeats; the message names it.
    """
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _OPTION_KEY.match(key) or not value:
            raise InputError(f"--co {item!r} is not KEY=VALUE; write e.g. --co COMPRESS=ZSTD")
        if key.upper() in options:
            raise InputError(f"--co {key.upper()} is given twice; keep one")
        options[key.upper()] = value
    return options


def shift_gcps(
    gcps: tuple[Sequence[GroundControlPoint], CRS | None], rows: int
) -> tuple[list[GroundControlPoint], CRS | None]:
    """The same GCPs for an output whose first row is scene row ``rows`` (a split part)."""
    points, crs = gcps
    shifted = [GroundControlPoint(p.row - rows, p.col, p.x, p.y, p.z, p.id, p.info) for p in points]
    return shifted, crs


def _to_prompts(prompts: Sequence[Any]) -> tuple[Prompt, ...]:
    converted = []
    for item in prompts:
        if isinstance(item, Prompt):
            converted.append(item)
        elif isinstance(item, tuple | list) and len(item) in (2, 3):
            converted.append(Prompt(*item))
        else:
            raise InputError(f"a prompt must be a Prompt or (id, text[, threshold]), got {item!r}")
    if not converted:
        raise InputError("an output needs at least one prompt")
    ids = [p.id for p in converted]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"duplicate prompt id(s) {', '.join(duplicates)}; ids must be unique")
    return tuple(converted)


def _resolve_dtype(output_type: OutputType, dtype: OutputDtype | str | None) -> OutputDtype:
    resolved = OutputDtype.UINT8 if dtype is None else OutputDtype(dtype)
    if output_type is OutputType.MASK and resolved is not OutputDtype.UINT8:
        raise InputError(
            f"--dtype {resolved.value} applies to --output-type prob only; masks are uint8"
        )
    return resolved


def _resolve_nodata(output_type: OutputType, dtype: OutputDtype, nodata: float | None) -> float:
    if dtype is OutputDtype.FLOAT32:
        if nodata is None or math.isnan(nodata):
            return math.nan
        if 0.0 <= nodata <= 1.0:
            raise InputError(
                f"--nodata {nodata} is a valid probability; use NaN or a value outside [0, 1]"
            )
        return float(nodata)
    default = MASK_NODATA if output_type is OutputType.MASK else PROB_UINT8_NODATA
    if nodata is None:
        return default
    taken = range(2) if output_type is OutputType.MASK else range(PROB_UINT8_SCALE + 1)
    if math.isnan(nodata) or nodata != int(nodata) or not 0 <= nodata <= 255 or nodata in taken:
        raise InputError(
            f"--nodata {nodata} is not free in a uint8 {output_type.value} output "
            f"(values {taken.start}..{taken.stop - 1} are data); use e.g. {default}"
        )
    return int(nodata)


def _check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not isinstance(key, str) or not _OPTION_KEY.match(key):
            raise InputError(f"tag name {key!r} must be letters, digits and '_'")
        if not isinstance(value, str):
            raise InputError(f"tag {key} must be text, got {value!r}; convert it with str()")
    return dict(tags)


def _check_options(options: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in options.items():
        if not isinstance(key, str) or not _OPTION_KEY.match(key) or not isinstance(value, str):
            raise InputError(f"creation option {key!r}={value!r} is not KEY=VALUE text")
        checked[key.upper()] = value
    return checked
