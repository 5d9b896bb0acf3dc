"""The CLI's error boundary: OSErrors the machine causes, failed allocations, SQLite's full
disk, and any unexpected exception become one line (a traceback only with --debug)."""

from __future__ import annotations

import errno
import signal
import sqlite3

import pytest
import typer
from typer.testing import CliRunner

from diffris_cli.errors import EXIT_FAILURE, sigterm_stops, user_errors

runner = CliRunner()


def _app_raising(error: BaseException) -> typer.Typer:
    """A real Typer app whose one command raises ``error`` behind the boundary."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    @user_errors
    def command() -> None:
        raise error

    return app


def _line(error: BaseException, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(_app_raising(error), [], env=env)
    assert result.exit_code == EXIT_FAILURE, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: ") and len(line) <= 400, line
    return line


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOSPC, "no space left on device writing /data/out/ledger; nothing was published"),
        (errno.EDQUOT, "disk quota exceeded writing /data/out/ledger; nothing was published"),
        (errno.EFBIG, "file too large for this file system or the file-size limit"),
        (errno.EACCES, "permission denied: /data/out/ledger; fix the permissions"),
        (errno.EROFS, "read-only file system: /data/out/ledger; write elsewhere"),
    ],
)
def test_an_os_error_of_the_machine_is_one_line_naming_the_file(code, expected):
    assert expected in _line(OSError(code, "strerror", "/data/out/ledger"))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("database or disk is full", "no space left on device writing the archive ledger"),
        ("disk I/O error", "cannot write the archive ledger: disk I/O error; check the free"),
    ],
)
def test_sqlite_on_a_full_disk_is_one_line(message, expected):
    assert expected in _line(sqlite3.OperationalError(message))


def test_sigterm_stops_is_undone_after_the_command():
    previous = signal.getsignal(signal.SIGTERM)
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    seen = []

    @app.command()
    @user_errors
    @sigterm_stops()
    def command() -> None:
        seen.append(signal.getsignal(signal.SIGTERM))

    assert runner.invoke(app, []).exit_code == 0
    assert seen[0] not in (previous, signal.SIG_DFL)
    assert signal.getsignal(signal.SIGTERM) == previous


def test_a_failed_allocation_is_one_line_with_the_fixes():
    error = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 66571993088 bytes."
    )
    line = _line(error)
    assert line.startswith("error: out of memory (RuntimeError:")
    assert "fewer prompts" in line and "--batch-size" in line


def test_an_unexpected_exception_is_one_cut_line_and_points_to_debug():
    line = _line(ValueError("x" * 5000))
    assert line.startswith("error: internal error: ValueError: xxx")
    assert line.endswith("...; rerun with --debug for the traceback")


def test_debug_lets_the_traceback_through():
    result = runner.invoke(_app_raising(ValueError("boom")), [], env={"DIFFRIS_DEBUG": "1"})
    assert isinstance(result.exception, ValueError)


def test_usage_errors_and_exit_codes_pass_through():
    result = runner.invoke(_app_raising(typer.Exit(3)), [])
    assert result.exit_code == 3 and result.output == ""


def test_debug_does_not_outlive_its_command(monkeypatch):
    """``--debug`` sets DIFFRIS_DEBUG for the command (and its workers) and puts it back after."""
    import os

    from diffris_cli.app import app as real_app

    monkeypatch.delenv("DIFFRIS_DEBUG", raising=False)
    runner.invoke(real_app, ["--debug", "--version"])
    runner.invoke(real_app, ["--debug", "info", "--json"])
    assert "DIFFRIS_DEBUG" not in os.environ
