"""Fixed names diffris writes in shared folders are never followed through a link.

Anyone who can write a shared output folder could plant ``<out>/.diffris-archive.lock`` (or the
ledger, a parts folder, a temporary output) as a symbolic link to a file of the user's, and a
write through the link would change that file. So every such name is checked with ``lstat``
(links are not followed) before diffris writes it, and refused with one line unless it is
missing or the kind of entry diffris makes there; files diffris creates at a fixed or
guessable name are opened with ``O_NOFOLLOW`` and, when fresh, ``O_EXCL``.
"""

from __future__ import annotations

import enum
import os
import stat
from pathlib import Path

from diffris.errors import OutputNotWritableError

__all__ = ["Kind", "create_exclusive", "describe", "refuse_unsafe"]


class Kind(enum.Enum):
    """What diffris expects at a fixed name."""

    FILE = "regular file"
    FOLDER = "folder"


_KINDS = {
    stat.S_ISLNK: "symbolic link",
    stat.S_ISDIR: "folder",
    stat.S_ISFIFO: "named pipe (FIFO)",
    stat.S_ISSOCK: "socket",
    stat.S_ISCHR: "character device",
    stat.S_ISBLK: "block device",
    stat.S_ISREG: "regular file",
}


def describe(mode: int) -> str:
    """The kind of file system entry an ``st_mode`` names (``"symbolic link"``, ...)."""
    return next((name for test, name in _KINDS.items() if test(mode)), "special file")


def refuse_unsafe(path: Path, kind: Kind, what: str, *, single_link: bool = False) -> None:
    """Refuse ``path`` unless it is missing or a ``kind`` that is not a symbolic link.

    Args:
        path: the fixed name diffris is about to write.
        kind: what diffris makes there.
        what: how the message names it (``"archive lock file"``).
        single_link: also refuse a regular file with other hard links (a lock or ledger is
            never linked elsewhere; writing it would change the other name's content too).

    Raises:
        OutputNotWritableError: ``path`` is a link, another kind of entry, or a hard-linked file.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise OutputNotWritableError(
            f"cannot check {path}: {err.strerror or err}; fix the folder's permissions"
        ) from err
    found = describe(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        raise OutputNotWritableError(
            f"{path} is a symbolic link, not the {what} diffris writes; remove the link (diffris "
            "does not follow it, its target is untouched) and rerun"
        )
    if found != kind.value:
        raise OutputNotWritableError(
            f"{path} is a {found}, not the {what} diffris writes (a {kind.value}); move it away "
            "and rerun"
        )
    if single_link and info.st_nlink > 1:
        raise OutputNotWritableError(
            f"{path} has {info.st_nlink} hard links; the {what} diffris writes has one, so it is "
            "not written through; remove it (the other names keep the content) and rerun"
        )


def create_exclusive(path: Path) -> None:
    """Create an empty file at ``path`` that did not exist, never through a link.

    Raises:
        FileExistsError: something (a file, a link) is already there.
        OSError: the folder cannot be written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    os.close(fd)
