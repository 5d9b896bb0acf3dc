"""What the ledger records of a published output, to notice later that it changed.

A GeoTIFF's fingerprint is its size, mtime and a BLAKE2b of its bytes. A Zarr store's is the
total size of its files, the newest mtime of its files and folders (deleting a chunk changes
its folder's mtime), and a BLAKE2b over every file's relative path, size and bytes, in sorted
order (a missing chunk, a deleted ``zarr.json`` or a rewritten byte all change it).

The cheap part (:func:`stat_output`: size and mtime, no read) decides a rerun's skip; the
checksum is computed only when that differs (or with ``--verify``), so a touched but identical
output is not reprocessed and a no-op rerun reads no output.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from diffris.errors import InputError

__all__ = [
    "OutputFingerprint",
    "OutputKindError",
    "checksum_output",
    "fingerprint_output",
    "stat_output",
]

_BLOCK = 1 << 20


class OutputKindError(InputError):
    """The output path holds something other than the file or store the job writes."""


@dataclass(frozen=True)
class OutputFingerprint:
    """Size (bytes), mtime (ns) and checksum (hex) of a published output."""

    size: int
    mtime_ns: int
    checksum: str | None = None

    def same_stat(self, other: OutputFingerprint) -> bool:
        return (self.size, self.mtime_ns) == (other.size, other.mtime_ns)


def stat_output(path: str | Path, *, store: bool) -> OutputFingerprint:
    """Size and mtime of the output at ``path`` without reading it (no checksum).

    Args:
        path: the output file (``store`` False) or Zarr store folder (``store`` True).
        store: whether the job writes a Zarr store.

    Raises:
        FileNotFoundError: nothing at ``path``.
        OutputKindError: a symlink, or a folder where a file is expected (or the reverse).
    """
    info = os.lstat(path)
    _check_kind(path, info.st_mode, store)
    if not store:
        return OutputFingerprint(info.st_size, info.st_mtime_ns)
    size, mtime_ns = 0, info.st_mtime_ns
    for folder, dirs, files in os.walk(path):  # os.walk follows no directory links
        for name in dirs + files:
            entry = os.lstat(os.path.join(folder, name))
            mtime_ns = max(mtime_ns, entry.st_mtime_ns)
            if name in files:
                size += entry.st_size
    return OutputFingerprint(size, mtime_ns)


def checksum_output(path: str | Path, *, store: bool) -> str:
    """BLAKE2b (hex) of an output file, or of every file of a Zarr store (see the module)."""
    digest = hashlib.blake2b(digest_size=20)
    if not store:
        _hash_file(digest, Path(path))
        return digest.hexdigest()
    root = Path(path)
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            file = Path(folder) / name
            relative = file.relative_to(root).as_posix()
            digest.update(f"{relative}\0{file.lstat().st_size}\0".encode())
            _hash_file(digest, file)
    return digest.hexdigest()


def fingerprint_output(path: str | Path, *, store: bool) -> OutputFingerprint:
    """Size, mtime and checksum of the output at ``path`` (see :func:`stat_output`)."""
    cheap = stat_output(path, store=store)
    return OutputFingerprint(cheap.size, cheap.mtime_ns, checksum_output(path, store=store))


def _check_kind(path: str | Path, mode: int, store: bool) -> None:
    if stat.S_ISLNK(mode):
        raise OutputKindError(f"{path} is a symlink, not the output this archive wrote")
    if store and not stat.S_ISDIR(mode):
        raise OutputKindError(f"{path} is not a folder, so not the Zarr store this archive wrote")
    if not store and not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise OutputKindError(f"{path} is {kind}, not the output file this archive wrote")


def _hash_file(digest: hashlib._Hash, path: Path) -> None:
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
