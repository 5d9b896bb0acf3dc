"""A failed output write as one line: disk full, quota exceeded, or a file-size limit.

GDAL reports a full disk as "Write failed" (libtiff's errno is printed, not raised), so when an
error carries no errno the folder's free space and the process's file-size limit are checked
while the temporary output still holds its space.
"""

from __future__ import annotations

import errno
import resource
import shutil
from pathlib import Path

from diffris.errors import OutputWriteError

__all__ = ["write_error"]

#: Below this many free bytes a failed write is taken for a full disk.
NEARLY_FULL = 2**20

_REASONS = {
    errno.ENOSPC: ("no space left on device", "free some space in {folder}"),
    errno.EDQUOT: ("disk quota exceeded", "free some space in {folder}"),
    errno.EFBIG: ("file-size limit reached (ulimit -f, or the file system's)", "raise the limit"),
}


def write_error(
    err: BaseException, path: Path, partial: Path | None, needed: int
) -> OutputWriteError | None:
    """The one-line error for a write of ``needed`` bytes that failed, or None when it is not
    the machine refusing space (the original error then stands).

    Args:
        err: what the writer raised.
        path: the output being written.
        partial: its temporary name, if created (its size counts against a file-size limit).
        needed: bytes the failed call tried to write.
    """
    code = _errno_in_chain(err)
    if code is None and isinstance(err, OSError):  # rasterio's RasterioIOError is one
        code = _diagnose(path, partial, needed)
    if code not in _REASONS:
        return None
    reason, fix = _REASONS[code]
    error = OutputWriteError(
        f"{reason} writing {path}; nothing was published; "
        f"{fix.format(folder=path.parent)} or write elsewhere"
    )
    error.errno = code
    return error


def _errno_in_chain(err: BaseException) -> int | None:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _REASONS:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


def _diagnose(path: Path, partial: Path | None, needed: int) -> int | None:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and free < max(needed, NEARLY_FULL):
        return errno.ENOSPC
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if limit != resource.RLIM_INFINITY:
        size = _size(partial) if partial is not None else 0
        if size + needed >= limit:
            return errno.EFBIG
    return None


def _size(path: Path) -> int:
    """Bytes under ``path`` (a file or a store's tree); the largest file counts for a limit."""
    try:
        if path.is_dir():
            return max((p.stat().st_size for p in path.rglob("*") if p.is_file()), default=0)
        return path.stat().st_size
    except OSError:
        return 0
