"""Turn the errors a user can cause into one line and an exit code (no traceback).

- a :class:`DiffrisError`: its message, exit 1 (or the code it carries);
- an ``OSError`` the machine causes (disk full, quota, file too large, permission, read-only
  file system) and SQLite's "database or disk is full": one line naming the file, exit 1;
- an allocation that failed (``MemoryError``, torch's "can't allocate memory"): one line with
  the fixes, exit 1;
- Ctrl-C: ``interrupted``, exit 130; SIGTERM (cron, systemd, ``kill``), once
  :func:`sigterm_stops` is active: ``terminated``, exit 143 (128 + 15, what a shell reports
  for a process SIGTERM killed), after the same clean-up as Ctrl-C;
- anything else: ``internal error: <Type>: <message>``, exit 1, the traceback only with
  ``--debug``.

``--debug`` (or ``DIFFRIS_DEBUG=1``) lets every traceback through instead.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import typer
import typer.exceptions

from diffris.errors import DiffrisError
from diffris_cli.console import err_console

P = ParamSpec("P")
R = TypeVar("R")

#: Exit codes: 0 success, 1 failure, 2 usage error (Click's own), 130 Ctrl-C, 143 SIGTERM.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM

#: An unexpected error's message is cut to this many characters (it may embed any input).
MAX_MESSAGE = 200

#: What the machine (not the input) refused, as the line says it.
_OS_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system or the file-size limit (ulimit -f)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` and sink abort runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    # Once: a second SIGTERM must not interrupt the clean-up the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """While active, SIGTERM stops the command cleanly: like Ctrl-C every ``finally`` and sink
    abort runs (the output in progress is removed), then one line and exit 143 (see
    :func:`user_errors`). The previous handler comes back afterwards.

    Also a decorator; put it under ``@user_errors``. Outside the main thread (where Python
    cannot set handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def debug_enabled() -> bool:
    return os.environ.get("DIFFRIS_DEBUG", "") not in ("", "0")


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print ``message`` as the one error line and return the Exit to raise."""
    from rich.markup import escape

    # escape: a message quoting user input ("RLE size [nan, 64]") is text, not rich markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, at most ``limit`` characters (``...`` marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def os_error_line(error: OSError) -> str | None:
    """The one line for an ``OSError`` the machine caused, or None for any other."""
    code = error.errno or 0
    reason = _OS_REASONS.get(code)
    if reason is None:
        return None
    where = f" {error.filename}" if error.filename is not None else ""
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "raise the limit" if code == errno.EFBIG else "free some space"
        writing = f" writing{where}" if where else ""
        return f"{reason}{writing}; nothing was published; {fix} or write elsewhere"
    fix = "write elsewhere" if code == errno.EROFS else "fix the permissions or choose another path"
    return f"{reason}:{where or ' (no file named)'}; {fix}"


def _sqlite_line(error: Exception) -> str | None:
    # sqlite3 is not imported for this: its errors are recognised by their module.
    if type(error).__module__ != "sqlite3":
        return None
    text = str(error)
    if "disk is full" in text:
        return "no space left on device writing the archive ledger; free some space and rerun"
    if "disk I/O error" in text:  # what SQLite says when its -wal/-shm files cannot grow
        return (
            "cannot write the archive ledger: disk I/O error; check the free space and the "
            "health of the output folder's disk, then rerun"
        )
    if "readonly" in text or "unable to open" in text:
        return f"cannot write the archive ledger: {cut(text)}; fix the folder's permissions"
    return None


def _memory_line(error: Exception) -> str | None:
    # torch reports a failed allocation as RuntimeError ("DefaultCPUAllocator: can't allocate
    # memory", "CUDA out of memory"); numpy as MemoryError.
    text = str(error)
    if not isinstance(error, MemoryError) and not (
        isinstance(error, RuntimeError) and ("allocate memory" in text or "out of memory" in text)
    ):
        return None
    return (
        f"out of memory ({type(error).__name__}: {cut(text, 120)}); run fewer prompts per run, "
        "lower --batch-size or use a smaller --tile"
    )


def internal_error_line(error: BaseException) -> str:
    """``internal error: <Type>: <message>`` with the message cut, and how to see more."""
    message = cut(str(error)) or "(no message)"
    return (
        f"internal error: {type(error).__name__}: {message}; rerun with --debug for the traceback"
    )


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so that no exception reaches the user as a traceback (see above)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if debug_enabled():
            return command(*args, **kwargs)
        try:
            return command(*args, **kwargs)
        except (typer.exceptions.Exit, typer.exceptions.Abort, typer.exceptions.TyperException):
            raise  # exit codes and usage errors: Typer prints those itself
        except DiffrisError as error:
            # An error may carry its own exit code (a locked archive folder: 75, EX_TEMPFAIL).
            raise fail(str(error), getattr(error, "exit_code", EXIT_FAILURE)) from None
        except Terminated:
            raise fail(
                "terminated (SIGTERM); the output in progress was removed, finished ones kept",
                EXIT_TERMINATED,
            ) from None
        except KeyboardInterrupt:
            raise fail("interrupted", EXIT_INTERRUPTED) from None
        except OSError as error:
            raise fail(os_error_line(error) or internal_error_line(error)) from None
        except Exception as error:
            line = _sqlite_line(error) or _memory_line(error) or internal_error_line(error)
            raise fail(line) from None

    return wrapper
