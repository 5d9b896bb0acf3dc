"""Keeping the feature cache under its size bound: least recently used entries go first.

Each entry's last use is the modification time of its ``used`` file, touched when a run opens
the entry and, while it works on it, at most every :data:`TOUCH_SECONDS`. Its size is the sum of
its files, remembered in its ``size`` file and trusted while that is newer than the entry's
``tiles/`` folder (every new or rewritten tile renames a marker into it, which updates the
folder's mtime).

An evicted entry is first renamed into ``trash/`` (atomic: a concurrent run sees the whole entry
or none of it; a read that loses the race is a miss), then deleted; trash left by a killed run
is deleted by the next eviction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from diffris.inference.feature_cache.store import TILES

log = logging.getLogger(__name__)

USED = "used"
SIZE = "size"
#: How often a run working on an entry marks it used again, in seconds.
TOUCH_SECONDS = 30.0


@dataclass(frozen=True)
class EntryUse:
    """An entry's name, bytes on disk and last use (ns since the epoch; 0: never marked)."""

    name: str
    size: int
    used_ns: int


def touch(entry: Path) -> None:
    """Mark ``entry`` used now."""
    entry.mkdir(parents=True, exist_ok=True)
    (entry / USED).touch()


def entry_size(entry: Path, *, remember: bool = False) -> int:
    """Bytes of every file of ``entry``; from its ``size`` file while that is current.

    Args:
        entry: the entry folder.
        remember: write the walked size to the ``size`` file (a run does once it closes the
            entry, so that later evictions need not walk it).
    """
    size_file = entry / SIZE
    try:
        if size_file.stat().st_mtime_ns > (entry / TILES).stat().st_mtime_ns:
            return int(size_file.read_text())
    except (OSError, ValueError):
        pass
    total = 0
    for folder, _, files in os.walk(entry):
        for name in files:
            with contextlib.suppress(OSError):  # replaced or evicted meanwhile
                total += os.lstat(os.path.join(folder, name)).st_size
    if remember:
        try:
            partial = entry / f".{SIZE}.{os.getpid()}.partial"
            partial.write_text(str(total))
            os.replace(partial, size_file)
        except OSError:
            pass  # only a cached number
    return total


def entry_uses(entries: Path) -> list[EntryUse]:
    """Every entry under ``entries``, least recently used first."""
    uses = []
    try:
        names = os.listdir(entries)
    except FileNotFoundError:
        return []
    for name in names:
        folder = entries / name
        if name.startswith(".") or not folder.is_dir():
            continue
        try:
            used = (folder / USED).stat().st_mtime_ns
        except OSError:
            used = 0  # never marked (a run killed at its start): evicted first
        uses.append(EntryUse(name, entry_size(folder), used))
    return sorted(uses, key=lambda use: (use.used_ns, use.name))


def evict(entries: Path, trash: Path, max_bytes: int, *, keep: frozenset[str] = frozenset()) -> int:
    """Remove least recently used entries until the cache holds at most ``max_bytes``.

    Args:
        entries: the folder of entries.
        trash: where entries are renamed before they are deleted.
        max_bytes: the bound.
        keep: entries this process is working on; never removed.

    Returns:
        The bytes the remaining entries hold.
    """
    clean_trash(trash)
    uses = entry_uses(entries)
    total = sum(use.size for use in uses)
    for use in uses:
        if total <= max_bytes:
            break
        if use.name in keep:
            continue
        if remove_entry(entries / use.name, trash):
            log.info("feature cache: evicted %s (%.1f MiB)", use.name, use.size / 2**20)
            total -= use.size
    return total


def remove_entry(entry: Path, trash: Path) -> bool:
    """Rename ``entry`` into ``trash`` and delete it; False when another run got there first."""
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"{entry.name}.{uuid.uuid4().hex[:8]}"
    try:
        os.rename(entry, target)
    except FileNotFoundError:
        return False
    shutil.rmtree(target, ignore_errors=True)
    return True


def clean_trash(trash: Path) -> None:
    """Delete what evictions killed midway left in ``trash`` (older than a minute)."""
    try:
        names = os.listdir(trash)
    except FileNotFoundError:
        return
    cutoff = time.time() - 60
    for name in names:
        path = trash / name
        try:
            if path.lstat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
