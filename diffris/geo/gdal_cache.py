"""GDAL's block cache, bounded for a run.

GDAL keeps the blocks it reads and writes in one process-wide cache until the cache is full; by
default the cache may take 5 % of the RAM (25 GB on a 512 GB server), so an uncapped run's memory
grows with the area it has read and written, not with the scene's width. A run reads each window
once, in row order, and writes each output block once; a row of tiles spans two rows of input
blocks and shares one with the next, so two block rows (24 MiB for an 8,192-px-wide RGB scene in
512² blocks) decode every block once. diffris holds the cache at :data:`DEFAULT_GDAL_CACHE`
(32 MiB) unless told otherwise; on wider scenes some blocks are decoded twice, a few
milliseconds against a tile's model time.

The commands bound it; the library does not change a process-wide setting by itself: wrap
:func:`~diffris.inference.segment.segment_scene` in :func:`bounded_gdal_cache` to do the same.

The size comes from, first found: ``--gdal-cache``, ``DIFFRIS_GDAL_CACHE``, a ``GDAL_CACHEMAX``
set in the environment (a GDAL user's deliberate setting for every GDAL program; read as GDAL
reads it), else 32 MiB. ``--gdal-cache 5%`` gives GDAL's own default back.

rasterio reads and sets ``GDAL_CACHEMAX`` in **bytes** (``GDALSetCacheMax64``), while GDAL reads
a number below 100,000 in the environment as megabytes: ``rasterio.Env(GDAL_CACHEMAX=64)`` is a
64-byte cache. Sizes here are always bytes.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from diffris.errors import InputError

__all__ = [
    "DEFAULT_GDAL_CACHE",
    "GDAL_CACHE_ENV",
    "MIN_GDAL_CACHE",
    "GdalCache",
    "bounded_gdal_cache",
    "gdal_cache_size",
    "parse_gdal_cache",
    "resolve_gdal_cache",
    "set_gdal_cache",
]

#: Environment variable with the cache size, when ``--gdal-cache`` is not given.
GDAL_CACHE_ENV = "DIFFRIS_GDAL_CACHE"
#: The bound when nothing else is asked for, in bytes.
DEFAULT_GDAL_CACHE = 32 * 2**20
#: The least accepted: GDAL must hold a few blocks (a 512² RGB block is 0.75 MiB).
MIN_GDAL_CACHE = 2**20

_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(%))\s*", re.IGNORECASE)
#: GDAL reads a plain GDAL_CACHEMAX below this as megabytes, above it as bytes.
_GDAL_MB_BELOW = 100_000


@dataclass(frozen=True)
class GdalCache:
    """The cache a run holds GDAL to, and where that size came from.

    Attributes:
        size: bytes.
        source: ``--gdal-cache``, ``DIFFRIS_GDAL_CACHE``, ``GDAL_CACHEMAX`` or ``default``.
    """

    size: int
    source: str

    @property
    def mib(self) -> float:
        return round(self.size / 2**20, 1)


def _ram() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def parse_gdal_cache(text: str, flag: str = "--gdal-cache") -> int:
    """``"64M"``, ``"1G"``, ``"512MiB"`` or ``"5%"`` (of the RAM) → bytes.

    A bare number is refused: GDAL would read ``64`` as megabytes and rasterio as bytes.

    Raises:
        InputError: not a size with a unit, or below 1 MiB.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        hint = " has no unit" if text.strip().isdigit() else " is not a size"
        raise InputError(f"{flag} {text!r}{hint}; give e.g. {flag} 64M, 1G or 5% (of the RAM)")
    number, unit, percent = float(match[1]), match[2], match[3]
    if percent and number > 100:
        raise InputError(f"{flag} {text!r} is more than the RAM; give e.g. {flag} 5%")
    size = int(_ram() * number / 100) if percent else int(number * _UNITS[unit.lower()])
    if size < MIN_GDAL_CACHE:
        raise InputError(
            f"{flag} {text!r} is below 1M, too small for GDAL to hold a block; give e.g. {flag} 64M"
        )
    return size


def _gdal_env_size(text: str) -> int:
    """``GDAL_CACHEMAX`` from the environment, read as GDAL reads it."""
    value = text.strip()
    if value.isdigit():
        number = int(value)
        size = number * 2**20 if number < _GDAL_MB_BELOW else number
        if size < MIN_GDAL_CACHE:
            raise InputError(
                f"GDAL_CACHEMAX={text} in the environment is below 1 MB; unset it or pass "
                "--gdal-cache 64M"
            )
        return size
    try:
        return parse_gdal_cache(value, "GDAL_CACHEMAX")
    except InputError:
        raise InputError(
            f"GDAL_CACHEMAX={text} in the environment is not a size (e.g. 64, megabytes, or "
            "5%); fix or unset it, or pass --gdal-cache 64M"
        ) from None


def resolve_gdal_cache(
    option: str | None = None, environ: Mapping[str, str] | None = None
) -> GdalCache:
    """The cache size of a run: ``option``, else ``DIFFRIS_GDAL_CACHE``, else an environment
    ``GDAL_CACHEMAX``, else :data:`DEFAULT_GDAL_CACHE`.

    Args:
        option: ``--gdal-cache`` as typed, or None.
        environ: the environment (default ``os.environ``).

    Raises:
        InputError: a size that cannot be read, naming where it came from.
    """
    environ = os.environ if environ is None else environ
    if option is not None:
        return GdalCache(parse_gdal_cache(option), "--gdal-cache")
    if environ.get(GDAL_CACHE_ENV):
        return GdalCache(parse_gdal_cache(environ[GDAL_CACHE_ENV], GDAL_CACHE_ENV), GDAL_CACHE_ENV)
    if environ.get("GDAL_CACHEMAX"):
        return GdalCache(_gdal_env_size(environ["GDAL_CACHEMAX"]), "GDAL_CACHEMAX")
    return GdalCache(DEFAULT_GDAL_CACHE, "default")


def gdal_cache_size() -> int:
    """The size of GDAL's block cache now, in bytes (``GDALGetCacheMax64``)."""
    from rasterio.env import get_gdal_config

    return int(get_gdal_config("GDAL_CACHEMAX"))


@contextlib.contextmanager
def bounded_gdal_cache(size: int) -> Iterator[None]:
    """Hold GDAL's block cache at ``size`` bytes inside the block, then restore it.

    The cache is process-wide: every thread's reads and writes (the tile reader, the writer)
    share the bound. Enter it from one thread (a command's run); worker processes that outlive
    no caller use :func:`set_gdal_cache`.
    """
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=int(size)):
        yield


def set_gdal_cache(size: int) -> None:
    """Hold this process's GDAL block cache at ``size`` bytes from now on (worker processes)."""
    from rasterio.env import set_gdal_config

    set_gdal_config("GDAL_CACHEMAX", int(size))
