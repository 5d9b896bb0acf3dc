"""Walking a source folder through links without looping.

A folder source descends into folder links (a scene folder may well be a link to another disk),
but never around in a circle: ``ln -s .. in/a/loop`` made ``os.walk(followlinks=True)`` repeat
the tree 40 levels deep, each level a new output name. The rules:

- a link into the tree is not followed: its target is walked as itself, under its real name;
- a link to the source folder's own ancestor is a loop: not followed (with a warning);
- a link out of the tree is followed, and every real folder, by ``(st_dev, st_ino)``, is walked
  once, so a loop outside the tree ends too.

Globs with ``**`` walk the same way (Python's ``glob`` follows every link, exponentially so with
two loops). Only regular files are scenes: a FIFO would block GDAL's open forever, and a device
such as ``/dev/zero`` would never end a ``--hash-content`` read.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from diffris.safe_paths import describe

__all__ = ["glob_paths", "regular_or_missing", "through_loop", "walk"]

logger = logging.getLogger(__name__)


def walk(
    root: Path, *, keep: Callable[[Path], bool] | None = None
) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk(root, followlinks=True)`` without loops (see the module docstring).

    Args:
        root: the folder (absolute).
        keep: the caller's own pruning: descend into a folder only when it returns True.

    Yields:
        ``(folder, dirs, files)`` as ``os.walk`` does, ``dirs`` sorted; pruning ``dirs`` in place
        stops the walk from descending, as with ``os.walk``.
    """
    real_root = Path(os.path.realpath(root))
    seen: set[tuple[int, int]] = set()  # (st_dev, st_ino) of each folder walked: each once
    _first_visit(root, seen)
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if (keep is None or keep(here / d))
            and _follow(here / d, real_root)
            and _first_visit(here / d, seen)
        )
        yield here, dirs, files


def _follow(path: Path, real_root: Path) -> bool:
    """Whether the walk descends into ``path``: real folders always; a folder link only when it
    leads out of the tree and not back around it (``ln -s .. in/a/loop`` would otherwise repeat
    the tree 40 levels deep). A link into the tree is skipped: its target is walked as itself."""
    if not path.is_symlink():
        return True
    target = Path(os.path.realpath(path))
    if target == real_root or real_root in target.parents:
        logger.debug("not following %s: it leads into the source folder", path)
        return False
    if target in real_root.parents:
        logger.warning("not following %s: it leads to %s, around the source folder", path, target)
        return False
    return True


def glob_paths(pattern: str, base: Path) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, but ``**`` walks like a folder source: glob's own
    ``**`` follows every folder link with no cycle check, so two loops make it exponential.

    Args:
        pattern: the glob.
        base: its fixed leading folder (absolute).
    """
    if "**" not in pattern:
        return glob.glob(pattern)
    parts = Path(os.path.abspath(pattern)).parts[len(base.parts) :]
    matches = []
    for here, dirs, files in walk(base):
        for name in [*dirs, *files]:
            if _match((here / name).relative_to(base).parts, parts):
                matches.append(str(here / name))
    return matches


def _match(names: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    # glob's rules: "**" is any number of folders; wildcards never match a leading dot.
    if not patterns:
        return not names
    if patterns[0] == "**":
        return any(_match(names[i:], patterns[1:]) for i in range(len(names) + 1))
    return (
        bool(names)
        and fnmatch.fnmatchcase(names[0], patterns[0])
        and (not names[0].startswith(".") or patterns[0].startswith("."))
        and _match(names[1:], patterns[1:])
    )


def through_loop(path: Path, base: Path) -> bool:
    """A glob's match reached through a folder link the folder walk would not follow (``**``
    follows every link, so ``ln -s .. in/a/loop`` repeats the tree)."""
    real_base = Path(os.path.realpath(base))
    try:
        folders = path.parent.relative_to(base).parts
    except ValueError:
        return False
    return any(
        not _follow(base.joinpath(*folders[: i + 1]), real_base) for i in range(len(folders))
    )


def _first_visit(path: Path, seen: set[tuple[int, int]]) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    key = (info.st_dev, info.st_ino)
    if key in seen:
        logger.debug("not walking %s again (reached through another link)", path)
        return False
    seen.add(key)
    return True


def regular_or_missing(path: Path) -> bool:
    """Folder and glob sources keep regular files (and dangling links, which fail as scenes);
    a FIFO would block GDAL's open forever and a device would never end a ``--hash-content``."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True
    if stat.S_ISREG(mode):
        return True
    logger.warning("skipping %s: a %s, not a raster file", path, describe(mode))
    return False
