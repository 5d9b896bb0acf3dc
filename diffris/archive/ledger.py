"""The archive ledger: one SQLite row per (scene, prompt set, model, options) in the output folder.

Only the driver process writes it (workers report back to the driver), so there is one writer
per run, and the output-folder lock makes it one run at a time; ``diffris archive status`` may
read while a run writes (WAL mode). Each status change is its own short transaction, so a
``kill -9`` loses at most the change in flight.

Row life cycle: ``pending`` (planned) -> ``running`` (handed to a worker) -> ``done`` or
``failed``. A row still ``running`` when a run starts was left by a killed run: it goes back to
``pending`` (an *interruption*, not counted against ``--retries``, since a reboot is not the
scene's fault). A ``failed`` row is retried on later runs while its consecutive ``failures`` are
at most ``retries``; past that it is *given up* (reported, exit code non-zero) until its input
changes. See :data:`SCHEMA` for the columns.

A done row records its output's fingerprint (size, mtime, checksum; schema v2), so a later run
notices an output truncated or changed since (:mod:`~diffris.archive.outputs`). A damaged
ledger file is moved aside and a fresh one is built (:mod:`~diffris.archive.ledger_file`); the
first run planning into it takes a done output from its ``diffris_job`` tag after a full read
(the tag is the job's identity), so only scenes without a good output are processed again.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from diffris.archive.fingerprint import OutputFingerprint
from diffris.archive.inputs import InputIdentity
from diffris.archive.jobs import SceneJob
from diffris.archive.ledger_file import LedgerCorruptError, connect, diagnose, move_aside
from diffris.archive.ledger_rows import (
    Action,
    Decision,
    JobStatus,
    LedgerRow,
    LedgerSummary,
    decide,
)
from diffris.archive.outputs import OutputCheck
from diffris.errors import InputError, InputNotFoundError, OutputNotWritableError
from diffris.safe_paths import Kind, refuse_unsafe

__all__ = [
    "LEDGER_NAME",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Action",
    "Decision",
    "JobStatus",
    "Ledger",
    "LedgerRow",
    "LedgerSummary",
]

logger = logging.getLogger(__name__)

LEDGER_NAME = "diffris-ledger.sqlite"
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,      -- unix seconds
    finished_at REAL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    backend TEXT NOT NULL,
    retries INTEGER NOT NULL,
    jobs INTEGER NOT NULL,
    done INTEGER, skipped INTEGER, failed INTEGER, exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,          -- sha256(input, prompt_hash, model_id, options_hash)[:32]
    input TEXT NOT NULL,           -- local path or GDAL URL
    output TEXT NOT NULL,
    model_id TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    options_hash TEXT NOT NULL,
    input_size INTEGER,            -- bytes; NULL for URLs
    input_mtime_ns INTEGER,
    input_sha256 TEXT,             -- only with --hash-content
    digest TEXT NOT NULL,          -- sha256(key, input identity): the output's diffris_job tag
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,       -- finished attempts, ever
    failures INTEGER NOT NULL DEFAULT 0,       -- consecutive failures since success/input change
    interruptions INTEGER NOT NULL DEFAULT 0,  -- runs killed while this scene was running
    error TEXT,
    worker TEXT,
    tiles INTEGER,
    seconds REAL,                  -- processing wall time of the last success
    planned_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    run_id INTEGER REFERENCES runs (id),
    output_size INTEGER,           -- bytes (all files of a Zarr store), when published
    output_mtime_ns INTEGER,       -- newest mtime of the file (the store's files and folders)
    output_checksum TEXT           -- BLAKE2b of the output (every file of a store)
);
CREATE INDEX IF NOT EXISTS jobs_output ON jobs (output, planned_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""
# version -> SQL taking the schema from version - 1 to version
_MIGRATIONS: dict[int, str] = {
    # v2: the published output's fingerprint; rows without one are checked by a full read
    2: """
    ALTER TABLE jobs ADD COLUMN output_size INTEGER;
    ALTER TABLE jobs ADD COLUMN output_mtime_ns INTEGER;
    ALTER TABLE jobs ADD COLUMN output_checksum TEXT;
    """,
}
#: Meta key set while a rebuilt ledger waits for its first plan (the damaged file's new name).
_REBUILT_FROM = "rebuilt_from"
#: Seconds a statement waits for another program's lock on the ledger before giving up.
BUSY_TIMEOUT_S = 30.0
#: SQLite's own files next to the database, written as freely as the database itself.
_SIDE_FILES = ("-journal", "-wal", "-shm")


class Ledger:
    """The SQLite ledger of an output folder (one connection; use from one thread).

    A damaged ledger file (not SQLite, another program's database, cut short) is moved aside
    to ``<name>.corrupt-<UTC time>`` and a new one started, with one warning line; read-only,
    it is only reported.

    Args:
        path: the database file (see :meth:`for_output`).
        readonly: open for reading only (``status``); the file must exist.

    Raises:
        InputNotFoundError: ``readonly`` and there is no ledger (or an empty one).
        LedgerCorruptError: ``readonly`` and the ledger is corrupt.
        LedgerBusyError: another program holds a lock on the ledger.
        InputError: the ledger was written by a newer diffris.
        OutputNotWritableError: the ledger or one of SQLite's side files is a symbolic link,
            not a regular file, or hard-linked (SQLite would write through it).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        for name in (self.path, *(self.path.with_name(self.path.name + s) for s in _SIDE_FILES)):
            refuse_unsafe(name, Kind.FILE, "archive ledger", single_link=True)
        if readonly and (not self.path.is_file() or self.path.stat().st_size == 0):
            raise InputNotFoundError(
                f"no archive ledger at {self.path}; run 'diffris archive' into that folder first"
            )
        problem = diagnose(self.path, schema_version=SCHEMA_VERSION, timeout_s=BUSY_TIMEOUT_S)
        rebuilt_from = None
        if problem is not None:
            if readonly:
                raise LedgerCorruptError(
                    f"ledger {self.path} is corrupt ({problem}); run diffris archive into "
                    f"{self.path.parent} to move it aside and rebuild it from the outputs' tags"
                )
            try:
                rebuilt_from = move_aside(self.path)
            except OSError as err:
                raise OutputNotWritableError(
                    f"ledger {self.path} is corrupt ({problem}) and cannot be moved aside "
                    f"({err.strerror or err}); fix the folder's permissions or move it yourself"
                ) from err
            logger.warning(
                "ledger %s was corrupt (%s): moved it to %s and rebuilding it from the outputs' "
                "tags",
                self.path,
                problem,
                rebuilt_from.name,
            )
        self._db = connect(self.path, readonly=readonly, timeout_s=BUSY_TIMEOUT_S)
        try:
            self._migrate(readonly)
            if rebuilt_from is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (_REBUILT_FROM, rebuilt_from.name),
                )
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def for_output(cls, out_dir: str | Path, *, readonly: bool = False) -> Ledger:
        """The ledger of an output folder: ``<out_dir>/diffris-ledger.sqlite``."""
        if not readonly:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        return cls(Path(out_dir) / LEDGER_NAME, readonly=readonly)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- runs ------------------------------------------------------------------------------------

    def begin_run(self, *, backend: str, retries: int, jobs: int) -> int:
        """Record a run's start; returns its id."""
        cursor = self._db.execute(
            "INSERT INTO runs (started_at, pid, host, backend, retries, jobs) VALUES (?,?,?,?,?,?)",
            (time.time(), os.getpid(), socket.gethostname(), backend, retries, jobs),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def end_run(self, run_id: int, *, done: int, skipped: int, failed: int, exit_code: int) -> None:
        """Record a run's end and its counts."""
        self._db.execute(
            "UPDATE runs SET finished_at=?, done=?, skipped=?, failed=?, exit_code=? WHERE id=?",
            (time.time(), done, skipped, failed, exit_code, run_id),
        )

    def recover_interrupted(self) -> int:
        """Return rows left ``running`` by a killed run to ``pending``; call under the lock.

        Returns:
            How many rows were recovered.
        """
        cursor = self._db.execute(
            "UPDATE jobs SET status='pending', interruptions=interruptions+1, "
            "error='interrupted: the run was killed while this scene was running' "
            "WHERE status='running'"
        )
        if cursor.rowcount:
            logger.warning(
                "%d scene(s) were interrupted by a killed run; rerunning", cursor.rowcount
            )
        return cursor.rowcount

    # --- planning --------------------------------------------------------------------------------

    def known_identities(self) -> dict[str, InputIdentity]:
        """Last recorded identity per input path (to reuse content hashes)."""
        rows = self._db.execute(
            "SELECT input, input_size, input_mtime_ns, input_sha256 FROM jobs "
            "WHERE input_sha256 IS NOT NULL"
        )
        return {row[0]: InputIdentity(row[1], row[2], row[3]) for row in rows}

    def plan(
        self,
        jobs: Sequence[SceneJob],
        *,
        retries: int,
        check_output: Callable[[SceneJob, OutputFingerprint | None], OutputCheck],
        run_id: int | None = None,
    ) -> list[Decision]:
        """Decide per job: run, skip (done and verified) or give up; record every job.

        In a ledger just rebuilt (see the class), a job without a row whose output passes
        ``check_output(job, None)`` (its tag and a full read) is recorded done and skipped.

        Args:
            jobs: the run's jobs.
            retries: a failed row is retried while its consecutive failures are <= ``retries``.
            check_output: whether a done job's output is still the one published, given the
                fingerprint recorded (see :func:`~diffris.archive.outputs.check_done_output`).
            run_id: the current run, recorded on every planned row.

        Returns:
            One decision per job, in order.
        """
        existing = self._rows_by_key([job.key for job in jobs])
        rebuilt = self._db.execute("SELECT 1 FROM meta WHERE key=?", (_REBUILT_FROM,)).fetchone()
        decisions = []
        now = time.time()
        with self._transaction():
            for job in jobs:
                row = existing.get(job.key)
                decision, output = decide(job, row, retries, check_output, adopt=bool(rebuilt))
                fresh = row is None or row.digest != job.digest
                self._upsert(job, decision, fresh=fresh, now=now, run_id=run_id, output=output)
                decisions.append(decision)
            self._db.execute("DELETE FROM meta WHERE key=?", (_REBUILT_FROM,))
        return decisions

    # --- status changes (one short transaction each) ---------------------------------------------

    def mark_running(self, key: str, *, worker: str | None = None) -> None:
        self._db.execute(
            "UPDATE jobs SET status='running', started_at=?, worker=? WHERE key=?",
            (time.time(), worker, key),
        )

    def mark_done(
        self,
        key: str,
        *,
        seconds: float,
        tiles: int | None = None,
        worker: str | None = None,
        output: OutputFingerprint | None = None,
    ) -> None:
        """Record a success and the fingerprint of the output just published."""
        size, mtime_ns, checksum = _fingerprint_values(output)
        self._db.execute(
            "UPDATE jobs SET status='done', attempts=attempts+1, failures=0, error=NULL, "
            "seconds=?, tiles=?, worker=COALESCE(?, worker), finished_at=?, "
            "output_size=?, output_mtime_ns=?, output_checksum=? WHERE key=?",
            (seconds, tiles, worker, time.time(), size, mtime_ns, checksum, key),
        )

    def mark_failed(self, key: str, *, error: str, worker: str | None = None) -> None:
        self._db.execute(
            "UPDATE jobs SET status='failed', attempts=attempts+1, failures=failures+1, "
            "error=?, worker=COALESCE(?, worker), finished_at=? WHERE key=?",
            (error, worker, time.time(), key),
        )

    def mark_pending(self, keys: Sequence[str]) -> None:
        """Put rows back to ``pending`` (a run stopped before finishing them)."""
        with self._transaction():
            self._db.executemany(
                "UPDATE jobs SET status='pending' WHERE key=? AND status='running'",
                [(key,) for key in keys],
            )

    # --- reading ---------------------------------------------------------------------------------

    def row(self, key: str) -> LedgerRow | None:
        return self._rows_by_key([key]).get(key)

    def rows(self, *, all_rows: bool = False) -> list[LedgerRow]:
        """Rows by output; by default only the most recently planned row of each output."""
        if all_rows:
            query = "SELECT * FROM jobs ORDER BY output, planned_at"
        else:
            query = (
                "SELECT * FROM jobs AS j WHERE NOT EXISTS (SELECT 1 FROM jobs AS k "
                "WHERE k.output = j.output AND k.planned_at > j.planned_at) ORDER BY output"
            )
        return [LedgerRow(**dict(row)) for row in self._db.execute(query)]

    def summary(self, *, all_rows: bool = False) -> LedgerSummary:
        """Counts per status and the rows, for ``diffris archive status``."""
        run = self._db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        last_run = dict(run) if run is not None else None
        rows = self.rows(all_rows=all_rows)
        counts = {status.value: 0 for status in JobStatus}
        for row in rows:
            counts[row.status] += 1
        retries = last_run["retries"] if last_run else None
        counts["given_up"] = sum(
            row.status == "failed" and retries is not None and row.failures > retries
            for row in rows
        )
        return LedgerSummary(str(self.path), counts, rows, last_run)

    # --- internals -------------------------------------------------------------------------------

    def _migrate(self, readonly: bool) -> None:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        version = 0
        if has_meta:
            found = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(found[0]) if found else 0
        if version > SCHEMA_VERSION:
            raise InputError(
                f"ledger {self.path} has schema v{version}, newer than this diffris (v"
                f"{SCHEMA_VERSION}); upgrade diffris"
            )
        if version == SCHEMA_VERSION or readonly:
            return
        with self._transaction():
            if version == 0:
                _run_script(self._db, SCHEMA)
            else:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    _run_script(self._db, _MIGRATIONS[step])
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def _rows_by_key(self, keys: Sequence[str]) -> dict[str, LedgerRow]:
        rows: dict[str, LedgerRow] = {}
        for start in range(0, len(keys), 500):  # SQLite limits the number of parameters
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT * FROM jobs WHERE key IN ({marks})", chunk):
                rows[row["key"]] = LedgerRow(**dict(row))
        return rows

    def _upsert(
        self,
        job: SceneJob,
        decision: Decision,
        *,
        fresh: bool,
        now: float,
        run_id: int | None,
        output: OutputFingerprint | None,
    ) -> None:
        identity = job.identity
        values = {
            "key": job.key,
            "input": job.input,
            "output": job.output,
            "model_id": job.model_id,
            "prompt_hash": job.prompt_hash,
            "options_hash": job.options_hash,
            "input_size": identity.size,
            "input_mtime_ns": identity.mtime_ns,
            "input_sha256": identity.sha256,
            "digest": job.digest,
            "planned_at": now,
            "run_id": run_id,
        }
        if fresh:
            # New row, or the input changed: the scene's history starts over.
            values |= {"status": "pending", "attempts": 0, "failures": 0, "error": None}
            values |= dict.fromkeys(("output_size", "output_mtime_ns", "output_checksum"))
            if decision.action is Action.SKIP:  # taken from its output's tag (rebuilt ledger)
                values |= {"status": "done", "finished_at": now}
        elif decision.action is Action.RUN:
            values["status"] = "pending"
        if output is not None:
            size, mtime_ns, checksum = _fingerprint_values(output)
            values |= {
                "output_size": size,
                "output_mtime_ns": mtime_ns,
                "output_checksum": checksum,
            }
        if fresh:
            columns = ", ".join(values)
            marks = ", ".join("?" * len(values))
            updates = ", ".join(f"{name}=excluded.{name}" for name in values if name != "key")
            self._db.execute(
                f"INSERT INTO jobs ({columns}) VALUES ({marks}) "
                f"ON CONFLICT(key) DO UPDATE SET {updates}",
                tuple(values.values()),
            )
        else:
            key = values.pop("key")
            updates = ", ".join(f"{name}=?" for name in values)
            self._db.execute(f"UPDATE jobs SET {updates} WHERE key=?", (*values.values(), key))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


def _fingerprint_values(output: OutputFingerprint | None) -> tuple[Any, Any, Any]:
    if output is None:
        return None, None, None
    return output.size, output.mtime_ns, output.checksum


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the surrounding transaction; run statement by statement.
    script = re.sub(r"--[^\n]*", "", script)
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)
