"""Failed reads of a scene as one line naming the file and the part, and VRT sources checked
before the first tile (a missing source, a VRT that names itself, a loop of VRTs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from diffris.errors import InputError, InputNotFoundError, RasterReadError
from diffris.geo.names import local_path

__all__ = ["check_vrt", "read_error"]

#: GDAL's reason is cut to this many characters in the line.
MAX_REASON = 160


def read_error(path: str, where: str, err: Exception) -> RasterReadError:
    """One line for a failed read of ``where`` in ``path``, quoting GDAL's reason.

    rasterio's own message is "Read failed. See previous exception for details."; GDAL's
    reason (e.g. ``TIFFReadEncodedTile() failed``) is the exception it chains.
    """
    cause = err.__cause__ or err.__context__ or err
    reason = " ".join(str(cause).split())
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    return RasterReadError(
        f"cannot read {path} at {where}: {reason.rstrip('.')}; the file is truncated or corrupt, or a "
        "source it names is missing: copy it again (gdalinfo -checksum finds the bad blocks)"
    )


def check_vrt(dataset: Any, path: str) -> None:
    """Refuse a VRT whose local source is missing or is the VRT itself, and one that does not
    read (a loop through other VRTs: GDAL says "Recursion detected"), before any tile is read."""
    own = Path(dataset.files[0]).resolve() if dataset.files else None
    for source in dataset.files[1:]:
        local = local_path(source)
        if local is None:
            continue
        if own is not None and Path(local).resolve() == own:
            raise InputError(f"{path} references itself as a source; fix the VRT's sources")
        if not Path(local).exists():
            raise InputNotFoundError(
                f"{path} names a source that does not exist: {local}; fix the VRT or restore "
                "the file"
            )
    if dataset.count and dataset.width and dataset.height:
        try:
            dataset.read(1, window=Window(0, 0, 1, 1))
        except RasterioIOError as err:
            raise read_error(path, "its first pixel", err) from err
