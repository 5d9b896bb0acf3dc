"""Turn the errors a user can cause into one line and an exit code (no traceback).

``--debug`` (or ``DIFFRIS_DEBUG=1``) lets the traceback through instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from diffris.errors import DiffrisError
from diffris_cli.console import err_console

P = ParamSpec("P")
R = TypeVar("R")

#: Exit codes: 0 success, 1 failure, 2 usage error (Click's own), 130 interrupted.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def debug_enabled() -> bool:
    return os.environ.get("DIFFRIS_DEBUG", "") not in ("", "0")


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print ``message`` as the one error line and return the Exit to raise."""
    from rich.markup import escape

    # escape: a message quoting user input ("RLE size [nan, 64]") is text, not rich markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so a :class:`DiffrisError` becomes one line and exit 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if debug_enabled():
            return command(*args, **kwargs)
        try:
            return command(*args, **kwargs)
        except DiffrisError as error:
            # An error may carry its own exit code (a locked archive folder: 75, EX_TEMPFAIL).
            raise fail(str(error), getattr(error, "exit_code", EXIT_FAILURE)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", EXIT_INTERRUPTED) from None

    return wrapper
