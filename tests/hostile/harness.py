"""Checks shared by the hostile-input tests: one clear line, non-zero exit, nothing of the user's
changed.

Each test builds its bad input in a temporary folder, runs the real CLI in-process with ``-q``
(only warnings and errors reach stderr), and asserts the promise of README's hostile-input table:
exactly one ``error:`` line that names the problem, no traceback, a non-zero exit, and every file
the user had left byte for byte as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from typer.testing import CliRunner, Result

from diffris_cli.app import app

#: An error line longer than this is not "one clear line" (it embeds unbounded input).
MAX_LINE = 400

runner = CliRunner()


def snapshot(*roots: Path) -> dict[str, str]:
    """Every regular file under ``roots`` (links not followed) mapped to its content's SHA-256."""
    files: dict[str, str] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            if path.is_file() and not path.is_symlink():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def run_cli(args: Sequence[str], *, env: dict[str, str] | None = None) -> Result:
    """The real ``diffris`` app, quiet, in this process."""
    return runner.invoke(app, ["-q", *map(str, args)], env=env)


def assert_one_clear_line(result: Result, *expected: str, code: int | None = None) -> str:
    """The run failed with exactly one ``error:`` line on stderr containing every ``expected``
    fragment, and no traceback; returns the line."""
    assert result.exit_code not in (0, None), result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error:" in line]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert len(line) <= MAX_LINE, f"{len(line)} characters: {line[:200]}..."
    for fragment in expected:
        assert fragment in line, line
    return line


def assert_unchanged(before: dict[str, str], *roots: Path) -> None:
    """No file of ``before`` was changed or removed (new files under ``roots`` are allowed)."""
    after = snapshot(*roots)
    changed = [path for path, digest in before.items() if after.get(path) != digest]
    assert not changed, f"changed or removed: {changed}"
