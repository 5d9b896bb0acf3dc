"""One archive run per output folder at a time: an ``fcntl.flock`` on ``<out>/.diffris-archive.lock``.

The lock belongs to the open file, so the kernel releases it when the holder exits in any way,
``kill -9`` included: a stale lock file never blocks the next night's run. The file itself is
never deleted (deleting it would let two runs lock two different inodes); its content, the
holder's pid, host and start time, only feeds the message a second run prints::

    another diffris archive run (pid 1234 on head, started 2024-06-01 02:00:03) holds
    /data/masks/.diffris-archive.lock; wait for it or check it is alive

The lock file is a fixed name in a folder others may write, so it is opened with ``O_NOFOLLOW``
and never truncated on open: a symbolic link, folder, FIFO, device or hard-linked file planted at
that name is refused with one line, and the file a link points at is left byte for byte as it was
(see :mod:`diffris.safe_paths`). The holder's details are written only once the lock is held.

Worker processes are started with ``spawn``, so they never inherit the locked descriptor.
On NFS, Linux maps ``flock`` to POSIX locks (NFSv4 supports them); other network filesystems
may not lock at all.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from diffris.errors import LockedError, OutputNotWritableError
from diffris.safe_paths import Kind, describe, refuse_unsafe

__all__ = ["EXIT_LOCKED", "LOCK_NAME", "ArchiveLockedError", "OutputLock"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".diffris-archive.lock"
_WHAT = "archive lock file"
# No O_TRUNC: truncating happens on the descriptor, after the lock is held and the file checked.
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
#: Exit code of a run that found the folder locked (sysexits' EX_TEMPFAIL: try again later).
EXIT_LOCKED = 75


class ArchiveLockedError(LockedError):
    """Another archive run holds the output folder's lock; the CLI exits with :data:`EXIT_LOCKED`."""

    exit_code = EXIT_LOCKED


class OutputLock:
    """Exclusive, non-blocking lock of an output folder (a context manager).

    Args:
        folder: the output folder; created if missing.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> Self:
        """Take the lock at once or fail.

        Raises:
            ArchiveLockedError: another process holds it (the message names it).
            OutputNotWritableError: the folder or lock file cannot be created, or something
                other than a regular file diffris made is at the lock's name.
        """
        if self._fd is not None:
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputNotWritableError(
                f"output folder {self.folder} is a file, not a folder; choose another -o"
            )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputNotWritableError(
                f"cannot create the output folder {self.folder}: {err.strerror or err}; "
                "choose another output folder or fix its permissions"
            ) from err
        refuse_unsafe(self.path, Kind.FILE, _WHAT, single_link=True)
        try:
            fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        except OSError as err:
            # A link or folder planted after the check above: refuse it the same way.
            refuse_unsafe(self.path, Kind.FILE, _WHAT, single_link=True)
            raise OutputNotWritableError(
                f"cannot create the lock file {self.path}: {err.strerror or err}; "
                "choose another output folder or fix its permissions"
            ) from err
        try:
            _check_opened(fd, self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                raise ArchiveLockedError(
                    f"another diffris archive run ({holder}) holds {self.path}; "
                    "wait for it or check it is alive"
                ) from None
            _write_holder(fd, self.path)
        except BaseException:
            os.close(fd)  # closing drops the flock too: a failed start never keeps the folder
            raise
        self._fd = fd
        logger.debug("locked %s", self.path)
        return self

    def release(self) -> None:
        """Release the lock (idempotent); the file stays, emptied."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _write_holder(fd: int, path: Path) -> None:
    # An OSError here (a full disk) reaches the CLI as its one line; the caller closes ``fd``.
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)


def _check_opened(fd: int, path: Path) -> None:
    # What was opened, not what the name showed a moment before (a FIFO opens too).
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        found = describe(info.st_mode)
        detail = f"is a {found}" if found != Kind.FILE.value else f"has {info.st_nlink} hard links"
        raise OutputNotWritableError(
            f"{path} {detail}, unlike the {_WHAT} diffris writes; move it away and rerun"
        )


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        # The holder may be between creating and writing the file.
        return "pid unknown"
