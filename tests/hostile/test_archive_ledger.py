"""Hostile ledgers and outputs for ``diffris archive`` and ``diffris archive status``.

Each case: one clear line, a non-zero exit, no traceback, and nothing of the user's changed
(``status`` never moves or rewrites a ledger, even a damaged one).
"""

import sqlite3

import numpy as np
import pytest

from diffris.archive import ledger as ledger_module
from diffris.archive.ledger import LEDGER_NAME, SCHEMA_VERSION, Ledger
from tests.archive.archive_helpers import tiny_archive_args, write_scene
from tests.hostile.harness import assert_one_clear_line, assert_unchanged, run_cli, snapshot


def _valid(out):
    with Ledger.for_output(out):
        pass
    db = sqlite3.connect(out / LEDGER_NAME, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(  # rows over many pages, so that half a file loses some
        "INSERT INTO runs (started_at, pid, host, backend, retries, jobs) VALUES (?,1,?,'x',2,0)",
        [(float(i), "h" * 200) for i in range(400)],
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return out / LEDGER_NAME


def _sql(path, *statements):
    db = sqlite3.connect(path, isolation_level=None)
    for statement in statements:
        db.execute(statement)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def random_bytes(out):
    (out / LEDGER_NAME).write_bytes(np.random.default_rng(1).bytes(36864))


def text_file(out):
    (out / LEDGER_NAME).write_text("scene,status\na.tif,done\n")


def foreign_sqlite(out):
    _sql(out / LEDGER_NAME, "CREATE TABLE invoices (id INTEGER, total REAL)")


def cut_in_half(out):
    path = _valid(out)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def newer_schema(out):
    _sql(_valid(out), f"UPDATE meta SET value='{SCHEMA_VERSION + 1}' WHERE key='schema_version'")


def garbage_schema_version(out):
    _sql(_valid(out), "UPDATE meta SET value='two' WHERE key='schema_version'")


def jobs_table_mangled(out):
    _sql(_valid(out), "DROP TABLE jobs", "CREATE TABLE jobs (key TEXT)")


def zero_bytes(out):
    (out / LEDGER_NAME).write_bytes(b"")


STATUS_CASES = {
    "random bytes": (random_bytes, ["is corrupt", "not an SQLite file", "run diffris archive"]),
    "a text file": (text_file, ["is corrupt", "not an SQLite file"]),
    "another program's SQLite": (foreign_sqlite, ["not a diffris ledger", "invoices"]),
    "cut in half": (cut_in_half, ["is corrupt", "malformed"]),
    "a newer diffris's": (newer_schema, ["newer than this diffris", "upgrade diffris"]),
    "a schema version that is no number": (garbage_schema_version, ["no schema version"]),
    "a jobs table without its columns": (jobs_table_mangled, ["table jobs lacks"]),
    "an empty file": (zero_bytes, ["no archive ledger", "run 'diffris archive'"]),
}


@pytest.mark.parametrize("case", STATUS_CASES, ids=list(STATUS_CASES))
def test_status_of_a_hostile_ledger_is_one_line_and_moves_nothing(tmp_path, case):
    make, expected = STATUS_CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    make(out)
    before = snapshot(tmp_path)
    names = _names(out)
    for extra in ([], ["--json"], ["--all"]):
        result = run_cli(["archive", "status", "-o", out, *extra])
        assert_one_clear_line(result, LEDGER_NAME, *expected, code=1)
    assert_unchanged(before, tmp_path)
    assert _names(out) == names


def _names(out):
    # SQLite itself may add -wal/-shm files to read a WAL ledger; nothing is renamed or removed
    return sorted(p.name for p in out.iterdir() if not p.name.endswith(("-wal", "-shm")))


def test_status_of_a_missing_folder_or_a_file_is_one_line(tmp_path):
    note = tmp_path / "notes.txt"
    note.write_text("mine")
    before = snapshot(tmp_path)
    for out in (tmp_path / "nowhere", note):
        assert_one_clear_line(run_cli(["archive", "status", "-o", out]), "no archive ledger")
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "nowhere").exists()


@pytest.fixture
def incoming(tmp_path):
    write_scene(tmp_path / "in" / "a.tif", seed=1)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("red roofs\n")
    return tmp_path


def _archive(tmp_path, *extra):
    return run_cli(
        tiny_archive_args(tmp_path / "in", tmp_path / "prompts.txt", tmp_path / "out", *extra)
    )


def test_a_run_into_a_newer_ledger_is_refused_and_leaves_it_alone(incoming):
    out = incoming / "out"
    out.mkdir()
    newer_schema(out)
    before = snapshot(incoming)
    assert_one_clear_line(_archive(incoming), "upgrade diffris", code=1)
    assert_unchanged(before, incoming)
    assert not list(out.glob("*.corrupt-*")) and not (out / "a.tif").exists()


def test_a_ledger_locked_by_another_program_is_one_line_and_exit_75(incoming, monkeypatch):
    out = incoming / "out"
    out.mkdir()
    _valid(out)
    monkeypatch.setattr(ledger_module, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(out / LEDGER_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # e.g. an sqlite3 shell in the middle of an edit
    try:
        before = snapshot(incoming)
        result = _archive(incoming)
        assert_one_clear_line(result, "is locked by another program", "rerun", code=75)
        assert_unchanged(before, incoming)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not (out / "a.tif").exists()


def test_a_folder_where_an_output_file_goes_fails_that_scene_and_is_kept(incoming):
    folder = incoming / "out" / "a.tif"
    (folder / "mine").mkdir(parents=True)
    (folder / "mine" / "notes.txt").write_text("keep me")
    before = snapshot(incoming)
    result = _archive(incoming)
    assert result.exit_code == 1 and "Traceback" not in result.output
    failed = [line for line in result.output.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and "is a folder where the scene's output file goes" in failed[0]
    assert_unchanged(before, incoming)


def test_a_run_over_a_damaged_ledger_says_so_in_one_line_and_goes_on(incoming):
    out = incoming / "out"
    assert _archive(incoming).exit_code == 0
    published = snapshot(out / "a.tif")
    random_bytes(out)
    damaged = (out / LEDGER_NAME).read_bytes()
    result = _archive(incoming, "--verify")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "was corrupt (not an SQLite file)" in lines[0], lines
    (aside,) = out.glob(f"{LEDGER_NAME}.corrupt-*Z")
    assert aside.name in lines[0] and aside.read_bytes() == damaged
    assert_unchanged(published, out)  # taken from its tag, not rewritten
    status = run_cli(["archive", "status", "-o", out])
    assert status.exit_code == 0 and "done" in status.stdout
