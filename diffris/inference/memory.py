"""What a run will hold in memory, and the check that it fits before any work starts.

The estimate covers what grows with the scene's width and the number of prompts (the model's
own weights and activations come on top; ``benchmarks/`` measures them):

- the stitcher's open band of rows: (P + 1) float32 maps of tile x width;
- the stitched rows on their way to the writer: one band being written, the next waiting, of
  P float32 rows each;
- the sink's buffer: one block-tall slab of P output-dtype rows;
- the tiles read ahead: 3 batches of RGB tiles and their masks;
- the model's output for one batch: (B, P, T, T) float32 probabilities;
- GDAL's block cache: the run's bound (``--gdal-cache``, 32 MiB by default; GDAL's own default
  is 5 % of the RAM).

10,000 prompts on a 256 x 256 scene need about 17.7 GiB plus the cache: the prompts, not the
scene, set the size.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import psutil

from diffris.errors import DiffrisError, InputError

__all__ = [
    "MAX_MEMORY_ENV",
    "MemoryEstimate",
    "NotEnoughMemoryError",
    "check_memory",
    "estimate_memory",
    "gdal_cache_bytes",
    "parse_size",
]

#: Environment variable with the budget to check against instead of the available memory.
MAX_MEMORY_ENV = "DIFFRIS_MAX_MEMORY"

_MIB = 2**20
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class NotEnoughMemoryError(DiffrisError, MemoryError):
    """The run would need more memory than the machine has (or ``--max-memory`` allows)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one scene's run holds at its peak, by part (see the module docstring)."""

    stitch_band: int
    write_queue: int
    sink_slab: int
    read_ahead: int
    batch_output: int
    gdal_cache: int

    @property
    def total(self) -> int:
        return (
            self.stitch_band
            + self.write_queue
            + self.sink_slab
            + self.read_ahead
            + self.batch_output
            + self.gdal_cache
        )

    @property
    def mib(self) -> float:
        return round(self.total / _MIB, 1)


def estimate_memory(
    *,
    width: int,
    height: int,
    tiles: int,
    prompts: int,
    tile: int,
    batch_size: int,
    output_itemsize: int,
) -> MemoryEstimate:
    """The peak memory of one scene's run (excluding the model).

    Args:
        width: scene width in pixels.
        height: rows the run writes.
        tiles: tiles of the grid (a batch never holds more).
        prompts: prompts of the run (output bands).
        tile: tile edge in pixels (also the output block height).
        batch_size: tiles per model batch.
        output_itemsize: bytes per output value (1 for masks and uint8 probabilities).
    """
    rows = min(tile, height)
    batch = max(1, min(batch_size, tiles))
    return MemoryEstimate(
        stitch_band=(prompts + 1) * rows * width * 4,
        write_queue=2 * prompts * rows * width * 4,
        sink_slab=prompts * rows * width * output_itemsize,
        read_ahead=3 * batch * tile * tile * 4,
        batch_output=batch * prompts * tile * tile * 4,
        gdal_cache=gdal_cache_bytes(),
    )


def gdal_cache_bytes() -> int:
    """GDAL's block cache size now, in bytes: the bound of the run when one is in effect
    (``--gdal-cache``, see :mod:`diffris.geo.gdal_cache`), else GDAL's own (5 % of the RAM)."""
    from diffris.geo.gdal_cache import gdal_cache_size

    return gdal_cache_size()


def parse_size(text: str, flag: str = "--max-memory") -> int:
    """``"48G"``, ``"48GiB"``, ``"512MB"`` or plain bytes → bytes (binary units).

    Raises:
        InputError: not a positive size.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)(?:i?b)?\s*", text.lower())
    if match is None or float(match[1]) <= 0:
        raise InputError(f"{flag} {text!r} is not a size; give e.g. {flag} 48G or 512M")
    return int(float(match[1]) * _UNITS[match[2]])


def check_memory(
    needed: int,
    *,
    scene: str,
    prompts: int,
    batch_size: int,
    budget: int | None = None,
) -> None:
    """Refuse a run whose estimate exceeds ``budget`` (default: the memory available now).

    Args:
        needed: the estimate in bytes (:attr:`MemoryEstimate.total` of the widest scene).
        scene: the scene it is for, named in the message.
        prompts: prompts of the run, named in the message.
        batch_size: ``--batch-size``, named in the message.
        budget: bytes allowed; None reads ``DIFFRIS_MAX_MEMORY``, else the available memory.

    Raises:
        NotEnoughMemoryError: with the numbers and the fixes.
        InputError: ``DIFFRIS_MAX_MEMORY`` is not a size.
    """
    source = "--max-memory"
    if budget is None and os.environ.get(MAX_MEMORY_ENV):
        budget, source = parse_size(os.environ[MAX_MEMORY_ENV], MAX_MEMORY_ENV), MAX_MEMORY_ENV
    if budget is None:
        budget, source = psutil.virtual_memory().available, "available"
    if needed <= budget:
        return
    have = "available" if source == "available" else f"allowed by {source}"
    if prompts > 1:
        fixes = ["run fewer prompts per run (split the prompt file)"]
    else:  # one prompt: the scene's width sets the size
        fixes = ["cut the scene into narrower pieces (gdal_translate -srcwin)"]
    if batch_size > 1:
        fixes.append("lower --batch-size")
    fixes.append("use a smaller --tile")
    raise NotEnoughMemoryError(
        f"{scene} with {prompts} prompt(s) needs about {needed / 2**30:.1f} GiB of memory "
        f"(excluding the model) but {budget / 2**30:.1f} GiB is {have}; {', '.join(fixes)}, "
        "or pass --max-memory to override the check"
    )
