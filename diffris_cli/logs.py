"""Logging set-up for the CLI: rich on a terminal, plain timestamped lines otherwise (cron)."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.logging import RichHandler

from diffris_cli.console import err_console
from diffris_cli.warnings_routing import WARNINGS_LOGGER, ExpectedWarningsToDebug, route_warnings

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    verbose: int, quiet: bool, log_file: Path | None = None, *, debug: bool = False
) -> None:
    """Route the library's ``logging`` output: -v → DEBUG, -q → WARNING, default INFO.

    Python warnings go the same way (:mod:`diffris_cli.warnings_routing`): the ones diffris
    expects at DEBUG (shown with ``-v`` or ``--debug``), all others as WARNING lines.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handlers: list[logging.Handler] = []
    if err_console.is_terminal:
        handlers.append(RichHandler(console=err_console, show_path=False, markup=False))
    else:
        plain = logging.StreamHandler()
        plain.setFormatter(logging.Formatter(PLAIN_FORMAT))
        handlers.append(plain)
    if log_file is not None:
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(logging.Formatter(PLAIN_FORMAT))
        handlers.append(to_file)
    root = logging.getLogger("diffris")
    root.handlers = handlers
    root.setLevel(level)
    root.propagate = False
    route_warnings(handlers, logging.DEBUG if debug else level)


def quiet_logging() -> None:
    """Only warnings and errors from here on (``-q``), whatever the handlers."""
    logging.getLogger("diffris").setLevel(logging.WARNING)
    for found in logging.getLogger(WARNINGS_LOGGER).filters:
        if isinstance(found, ExpectedWarningsToDebug):
            found.level = max(found.level, logging.WARNING)


def add_log_file(log_file: Path) -> None:
    """Also append the library's log lines to ``log_file``, at the level ``-v``/``-q`` chose."""
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(logging.Formatter(PLAIN_FORMAT))
    logging.getLogger("diffris").addHandler(to_file)
    logging.getLogger(WARNINGS_LOGGER).addHandler(to_file)
