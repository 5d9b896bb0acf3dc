"""The ledger's SQLite file: telling a damaged one from ours, moving it aside, one-line errors.

A ledger can be damaged by anything outside diffris (a disk fault, a copy cut short, a tool
writing the wrong file at its name). Before using one, :func:`ledger_problem` checks that it is
an SQLite file, that it holds diffris's tables, and SQLite's ``quick_check``; a run then moves a
damaged ledger aside (:func:`move_aside`, nothing deleted) and rebuilds it from the outputs'
tags, while ``diffris archive status`` only reports it. A ledger written by a newer diffris is
not damaged: it is refused and left alone.

SQLite errors met while using a ledger become one-line :class:`DiffrisError` s
(:func:`ledger_error`): locked by another program, damaged, not writable.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from diffris.errors import DiffrisError, OutputNotWritableError

__all__ = [
    "LedgerBusyError",
    "LedgerCorruptError",
    "LedgerError",
    "connect",
    "diagnose",
    "ledger_error",
    "ledger_problem",
    "move_aside",
]

_SQLITE_HEADER = b"SQLite format 3\x00"
#: Tables and columns every diffris ledger has had since schema v1.
_REQUIRED = {
    "meta": {"key", "value"},
    "runs": {"id", "started_at", "retries"},
    "jobs": {"key", "input", "output", "digest", "status", "attempts", "failures", "planned_at"},
}
# SQLite's primary result codes (https://sqlite.org/rescode.html)
_BUSY, _LOCKED, _CORRUPT, _NOTADB = 5, 6, 11, 26
_NOT_WRITABLE = {3, 8, 10, 13, 14}  # PERM, READONLY, IOERR, FULL, CANTOPEN


class LedgerError(DiffrisError, RuntimeError):
    """The ledger cannot be used."""


class LedgerCorruptError(LedgerError):
    """The ledger file is not a usable diffris ledger (damaged, or another program's file)."""


class LedgerBusyError(LedgerError):
    """Another program holds a lock on the ledger; the CLI exits 75 (try again later)."""

    exit_code = 75


def diagnose(path: Path, *, schema_version: int, timeout_s: float) -> str | None:
    """:func:`ledger_problem` of the file at ``path``, opened read-only; None if there is none.

    Raises:
        LedgerBusyError: another program holds a lock on it for more than ``timeout_s``.
    """
    if not path.is_file():
        return None
    db = sqlite3.connect(_uri(path, readonly=True), uri=True, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        return ledger_problem(db, path, schema_version=schema_version)
    except sqlite3.Error as err:
        raise ledger_error(path, err) from err
    finally:
        db.close()


def connect(path: Path, *, readonly: bool, timeout_s: float) -> sqlite3.Connection:
    """The ledger's connection (autocommit; WAL when writing) whose errors are one line."""
    db = sqlite3.connect(
        _uri(path, readonly=readonly),
        uri=True,
        timeout=timeout_s,
        isolation_level=None,
        factory=_Connection,
    )
    db.ledger_path = path
    if not readonly:
        db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; fast commits
    db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    db.row_factory = sqlite3.Row
    return db


def ledger_problem(db: sqlite3.Connection, path: Path, *, schema_version: int) -> str | None:
    """Why the ledger at ``path`` (opened as ``db``) is not a usable diffris ledger, or None.

    An empty file or database is fine (a new ledger). A ledger of a schema newer than
    ``schema_version`` is not judged here (its tables may differ); the caller refuses it.

    Raises:
        sqlite3.Error: other than damage, e.g. the database is locked.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return None
    if header and header != _SQLITE_HEADER:
        return "not an SQLite file"
    try:
        tables = {
            name: {column[1] for column in db.execute(f"PRAGMA table_info('{name}')")}
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            return None
        if "meta" not in tables:
            names = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            return f"not a diffris ledger: it holds the tables {names[:200]}"
        found = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = _int(found[0]) if found else None
        if version is None:
            return "not a diffris ledger: no schema version"
        if version > schema_version:
            return None
        for name, columns in _REQUIRED.items():
            if missing := sorted(columns - tables.get(name, set())):
                return f"table {name} lacks {', '.join(missing)}"
        check = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as err:
        if _code(err) in (_CORRUPT, _NOTADB):
            return str(err)
        raise
    if check != ["ok"]:
        return f"damaged: {check[0][:200]}"
    return None


def move_aside(path: Path) -> Path:
    """Rename a damaged ledger (and its ``-wal``/``-shm`` files) to ``<name>.corrupt-<UTC time>``.

    Returns:
        The new name of the ledger.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    count = 1
    while aside.exists() or aside.is_symlink():
        count += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{count}")
    for suffix in ("-wal", "-shm"):  # a WAL left beside a new ledger would be replayed into it
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.rename(companion, aside.with_name(aside.name + suffix))
    os.rename(path, aside)
    return aside


def ledger_error(path: Path, err: sqlite3.Error) -> DiffrisError:
    """The one-line error for an SQLite error met while using the ledger at ``path``."""
    code = _code(err)
    if code in (_BUSY, _LOCKED):
        return LedgerBusyError(
            f"ledger {path} is locked by another program ({err}); close what holds it "
            "(e.g. an sqlite3 shell) and rerun"
        )
    if code in (_CORRUPT, _NOTADB):
        return LedgerCorruptError(
            f"ledger {path} is corrupt ({err}); rerun diffris archive into {path.parent} to move "
            "it aside and rebuild it from the outputs' tags"
        )
    if code in _NOT_WRITABLE:
        return OutputNotWritableError(
            f"cannot write the ledger {path} ({err}); fix the folder's permissions or free space"
        )
    return LedgerError(f"ledger {path}: {err}")


class _Connection(sqlite3.Connection):
    """A connection whose SQLite errors are one-line errors naming the ledger."""

    ledger_path: Path

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as err:
            raise ledger_error(self.ledger_path, err) from err

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as err:
            raise ledger_error(self.ledger_path, err) from err


def _uri(path: Path, *, readonly: bool) -> str:
    return path.absolute().as_uri() + ("?mode=ro" if readonly else "")


def _code(err: sqlite3.Error) -> int:
    return (getattr(err, "sqlite_errorcode", 0) or 0) & 0xFF


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
