"""Atomic publishing: outputs are written under a temporary name and renamed into place.

A sink writes to ``.<name>.partial-<pid>-<token>`` in the output's own folder (same filesystem,
so the final rename is atomic) and renames it to ``<name>`` only when complete. A killed run
therefore leaves a dot-prefixed temporary name, never a plausible-looking file at the output
path; :func:`clean_stale_partials` removes those of processes that are gone. The temporary name
holds the pid, so it is partly guessable in a shared folder: :func:`reserve_partial` creates it
with ``O_EXCL | O_NOFOLLOW`` (a folder with ``mkdir``), so a link planted at that name is never
written through; the writer (GDAL, zarr) then opens the empty entry diffris made.

Replacing an existing output (``overwrite``): a file replaces a file with one ``os.replace``; a
directory (a Zarr store) cannot be replaced atomically, so the old one is renamed aside to
``.<name>.old-<pid>-<token>``, the new one renamed into place, then the old one deleted. Readers
see either the old or the new output, never a mix; for an instant there is none.

A missing output folder is created (like ``mkdir -p``), so ``-o results/2024/buildings.tif``
works in a cron job without a separate ``mkdir``.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import psutil

from diffris.errors import OutputExistsError, OutputNotWritableError
from diffris.safe_paths import create_exclusive

__all__ = [
    "PARENT_ENV",
    "DriverGoneError",
    "check_output",
    "clean_stale_partials",
    "partial_path",
    "publish",
    "reserve_partial",
    "remove_path",
]

logger = logging.getLogger(__name__)

_RESERVE_TRIES = 16
#: Set in an archive worker to its driver's pid: once the driver is gone nothing is published.
PARENT_ENV = "DIFFRIS_PUBLISH_PARENT"
_TEMP_NAME = re.compile(
    r"^\.(?P<target>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})(\.[^/]*)?$"
)


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """Check up front that ``path`` may be written; create its folder if missing.

    Call this before any expensive work: it is what turns "output exists" and "folder not
    writable" into an immediate one-line error instead of a failure after an hour of inference.

    Args:
        path: the output file or Zarr store.
        overwrite: allow replacing an existing output.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputNotWritableError: the folder cannot be created or written to.
    """
    path = Path(path)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    _ensure_writable_folder(path)
    return path


def partial_path(path: Path) -> Path:
    """A fresh temporary name next to ``path``: ``.<name>.partial-<pid>-<token>``."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")


def reserve_partial(path: Path, *, folder: bool = False) -> Path:
    """Create an empty temporary output next to ``path`` (a file, or a ``folder``) and return it.

    The entry is new (``O_EXCL``, or ``mkdir``): a name someone planted (a symbolic link to a
    file of the user's) is skipped for another, never followed.

    Raises:
        OutputNotWritableError: the folder cannot be written.
    """
    for _ in range(_RESERVE_TRIES):
        partial = partial_path(path)
        try:
            if folder:
                os.mkdir(partial)  # never follows a link at the last component
            else:
                create_exclusive(partial)
            return partial
        except FileExistsError:
            logger.warning("%s exists already (planted?); choosing another temporary name", partial)
        except OSError as err:
            raise OutputNotWritableError(
                f"cannot create {partial}: {err.strerror or err}; choose another output or fix "
                "its permissions"
            ) from err
    raise OutputNotWritableError(
        f"{_RESERVE_TRIES} temporary names next to {path} were taken; clean up {path.parent}"
    )


class DriverGoneError(OutputNotWritableError):
    """An archive worker's driver died: the worker's output is not published."""


def publish(partial: Path, path: Path, *, overwrite: bool) -> None:
    """Rename a finished ``partial`` to ``path`` (see the module docstring for directories).

    Raises:
        OutputExistsError: ``path`` appeared meanwhile and ``overwrite`` is False.
        DriverGoneError: in an archive worker whose driver is gone (see :data:`PARENT_ENV`).
    """
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):
        raise DriverGoneError(
            f"the archive run that started this worker is gone; {path} not published"
        )
    exists = path.exists() or path.is_symlink()
    if exists and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    if partial.is_file():
        _fsync_file(partial)
    if not exists:
        os.rename(partial, path)
    elif partial.is_file() and not path.is_dir():
        os.replace(partial, path)
    else:
        aside = path.with_name(f".{path.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.rename(path, aside)
        try:
            os.rename(partial, path)
        except OSError:
            os.rename(aside, path)
            raise
        remove_path(aside)
    _fsync_dir(path.parent)
    logger.info("wrote %s", path)


def remove_path(path: Path) -> None:
    """Delete a file, symlink or directory tree if it exists (best effort, logged on failure)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as err:
        logger.warning("could not remove %s: %s", path, err)


def clean_stale_partials(folder: str | Path) -> list[Path]:
    """Remove temporary outputs left in ``folder`` by processes that no longer run.

    Only names this module makes (``.<name>.partial-<pid>-<token>[...]`` and
    ``.<name>.old-<pid>-<token>``) are touched, and only when no process ``<pid>`` exists on this
    machine. An ``.old-`` output whose ``<name>`` is missing (the process died between the two
    renames of an overwrite) is renamed back to ``<name>`` instead of deleted. On a folder shared between machines, run it from one machine only: a pid says
    nothing about processes elsewhere.

    Returns:
        The paths removed (restored ones are not listed).
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or psutil.pid_exists(pid):
            continue
        target = folder / match["target"]
        restorable = match["kind"] == "old" and not entry.is_symlink()  # diffris makes no links
        if restorable and not (target.exists() or target.is_symlink()):
            # Killed between the two renames of a directory overwrite: the old output is the
            # only complete one, so put it back rather than delete it.
            logger.info("restoring %s from %s left by process %d", target, entry, pid)
            os.rename(entry, target)
            continue
        logger.info("removing %s left by process %d, which is gone", entry, pid)
        remove_path(entry)
        removed.append(entry)
    return removed


def _ensure_writable_folder(path: Path) -> None:
    folder = path.parent
    if not folder.is_dir():
        existing = next((p for p in folder.parents if p.exists()), None)
        blocker = folder if folder.exists() else existing
        if blocker is not None and not blocker.is_dir():
            raise OutputNotWritableError(
                f"cannot write {path}: {blocker} is a file, not a folder; choose another output"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputNotWritableError(
                f"cannot create output folder {folder}: {err.strerror or err}; "
                "choose another output or fix its permissions"
            ) from err
    try:
        handle, probe = tempfile.mkstemp(prefix=".diffris-write-test-", dir=folder)
    except OSError as err:
        raise OutputNotWritableError(
            f"output folder {folder} is not writable: {err.strerror or err}; "
            "choose another output or fix its permissions"
        ) from err
    os.close(handle)
    os.unlink(probe)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    # Makes the rename durable; some filesystems refuse fsync on directories, which is harmless.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
