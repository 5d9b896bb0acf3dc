"""The ledger notices outputs changed since they were published, and survives its own damage.

Real SQLite files, real GeoTIFFs and Zarr stores written by the real sinks (FieldProcessor).
"""

import logging
import os
import shutil
import sqlite3

import numpy as np
import pytest
import rasterio

from diffris.archive.jobs import JOB_TAG
from diffris.archive.ledger import LEDGER_NAME, SCHEMA_VERSION, Ledger
from diffris.archive.runner import archive
from diffris.errors import InputError
from tests.archive.archive_helpers import PROMPTS, field_processor, job_options, read, write_scene
from tests.hostile.harness import assert_unchanged, snapshot


def _run(tmp_path, suffix=".tif", **kw):
    return archive(
        tmp_path / "in",
        out_dir=tmp_path / "out",
        processor=field_processor(),
        model="stand-in",
        model_id="field-v1",
        prompts=PROMPTS,
        options=job_options(),
        suffix=suffix,
        **kw,
    )


def _status(report):
    return {r.output.rsplit("/", 1)[1]: r.status for r in report.results}


def _rows(tmp_path):
    with Ledger.for_output(tmp_path / "out", readonly=True) as ledger:
        return {row.output.rsplit("/", 1)[1]: row for row in ledger.rows()}


@pytest.fixture
def done(tmp_path):
    """Two scenes archived once; their outputs and pixels as first published."""
    write_scene(tmp_path / "in" / "a.tif", seed=1)
    write_scene(tmp_path / "in" / "b.tif", seed=2)
    assert _status(_run(tmp_path)) == {"a.tif": "done", "b.tif": "done"}
    return tmp_path, {name: read(tmp_path / "out" / name) for name in ("a.tif", "b.tif")}


def test_a_truncated_output_with_its_tags_intact_is_reprocessed(done):
    tmp_path, pixels = done
    output = tmp_path / "out" / "a.tif"
    output.write_bytes(output.read_bytes()[:3072])
    with rasterio.open(output) as src:  # the tags survive the cut: a tag check alone passes
        assert JOB_TAG in src.tags()
    report = _run(tmp_path)
    assert _status(report) == {"a.tif": "done", "b.tif": "skipped"}
    (redone,) = [r for r in report.results if r.status == "done"]
    assert "output changed since it was published" in redone.reason
    row = _rows(tmp_path)["a.tif"]
    assert row.status == "done" and row.attempts == 2
    assert row.output_size == output.stat().st_size
    np.testing.assert_array_equal(read(output), pixels["a.tif"])


def test_a_touched_but_identical_output_is_not_reprocessed_and_its_mtime_recorded(done):
    tmp_path, _ = done
    output = tmp_path / "out" / "a.tif"
    before = _rows(tmp_path)["a.tif"]
    os.utime(output, ns=(before.output_mtime_ns + 5_000_000_000,) * 2)
    assert _status(_run(tmp_path)) == {"a.tif": "skipped", "b.tif": "skipped"}
    after = _rows(tmp_path)["a.tif"]
    assert after.attempts == 1 and after.output_checksum == before.output_checksum
    assert after.output_mtime_ns == output.stat().st_mtime_ns != before.output_mtime_ns


def test_verify_reads_an_output_whose_size_and_mtime_were_kept(done):
    tmp_path, pixels = done
    output = tmp_path / "out" / "a.tif"
    stat = output.stat()
    data = bytearray(output.read_bytes())
    data[-100] ^= 0xFF  # a flipped byte in the pixel data; size and mtime put back
    output.write_bytes(bytes(data))
    os.utime(output, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _status(_run(tmp_path))["a.tif"] == "skipped"  # the cheap check trusts size + mtime
    assert _status(_run(tmp_path, verify=True)) == {"a.tif": "done", "b.tif": "skipped"}
    np.testing.assert_array_equal(read(output), pixels["a.tif"])


def _downgrade_to_v1(ledger_path):
    with sqlite3.connect(ledger_path) as db:
        for column in ("output_size", "output_mtime_ns", "output_checksum"):
            db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
        db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")


def test_a_v1_ledger_is_migrated_and_its_rows_checked_by_a_full_read(done):
    tmp_path, pixels = done
    _downgrade_to_v1(tmp_path / "out" / LEDGER_NAME)
    with Ledger.for_output(tmp_path / "out", readonly=True) as ledger:  # status reads v1 as is
        assert {row.status for row in ledger.rows()} == {"done"}
    output = tmp_path / "out" / "a.tif"
    output.write_bytes(output.read_bytes()[:3072])
    report = _run(tmp_path)
    assert _status(report) == {"a.tif": "done", "b.tif": "skipped"}
    assert "damaged" in next(r.reason for r in report.results if r.status == "done")
    rows = _rows(tmp_path)
    assert all(row.output_checksum for row in rows.values())  # both now carry a fingerprint
    with sqlite3.connect(tmp_path / "out" / LEDGER_NAME) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
    np.testing.assert_array_equal(read(output), pixels["a.tif"])


def _random(path):
    path.write_bytes(np.random.default_rng(0).bytes(36864))


def _text(path):
    path.write_text("these are my notes, not a database\n" * 100)


def _foreign(path):
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE birds (name TEXT, seen INTEGER)")
        db.execute("INSERT INTO birds VALUES ('kite', 3)")


def _truncated(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(  # enough rows for the tables to span many pages
        "INSERT INTO runs (started_at, pid, host, backend, retries, jobs) VALUES (?,1,?,'x',2,0)",
        [(float(i), "h" * 200) for i in range(400)],
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [_random, _text, _foreign, _truncated])
def test_a_damaged_ledger_is_moved_aside_and_rebuilt_from_the_outputs_tags(done, damage, caplog):
    tmp_path, pixels = done
    ledger_path = tmp_path / "out" / LEDGER_NAME
    damage(ledger_path)
    damaged = ledger_path.read_bytes()
    (tmp_path / "out" / "b.tif").unlink()  # one output gone: only it is processed
    write_scene(tmp_path / "in" / "c.tif", seed=3)  # and a new scene
    with caplog.at_level(logging.WARNING, logger="diffris.archive"):
        report = _run(tmp_path)
    assert _status(report) == {"a.tif": "skipped", "b.tif": "done", "c.tif": "done"}
    warnings = [r.getMessage() for r in caplog.records if "was corrupt" in r.getMessage()]
    assert len(warnings) == 1 and "rebuilding it from the outputs' tags" in warnings[0]
    (aside,) = (tmp_path / "out").glob(f"{LEDGER_NAME}.corrupt-*Z")  # (-wal, -shm beside it)
    assert aside.name in warnings[0] and aside.read_bytes() == damaged  # moved, not changed
    rows = _rows(tmp_path)
    assert {name: row.status for name, row in rows.items()} == dict.fromkeys(
        ("a.tif", "b.tif", "c.tif"), "done"
    )
    assert rows["a.tif"].output_checksum  # the adopted row carries a fingerprint
    np.testing.assert_array_equal(read(tmp_path / "out" / "b.tif"), pixels["b.tif"])
    assert _status(_run(tmp_path)) == dict.fromkeys(("a.tif", "b.tif", "c.tif"), "skipped")


def test_after_a_rebuild_a_truncated_output_is_not_taken_from_its_tag(done):
    tmp_path, pixels = done
    _random(tmp_path / "out" / LEDGER_NAME)
    output = tmp_path / "out" / "a.tif"
    output.write_bytes(output.read_bytes()[:3072])
    assert _status(_run(tmp_path)) == {"a.tif": "done", "b.tif": "skipped"}
    np.testing.assert_array_equal(read(output), pixels["a.tif"])


def test_a_ledger_of_a_newer_diffris_is_refused_and_left_alone(done):
    tmp_path, _ = done
    ledger_path = tmp_path / "out" / LEDGER_NAME
    db = sqlite3.connect(ledger_path, isolation_level=None)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.execute("DROP TABLE jobs")  # a newer schema may differ: it is still not "damaged"
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    before = ledger_path.read_bytes()
    with pytest.raises(InputError, match="upgrade diffris"):
        _run(tmp_path)
    assert ledger_path.read_bytes() == before
    assert not list((tmp_path / "out").glob("*.corrupt-*"))


def _missing_chunk(store):
    chunks = sorted(
        p for p in store.rglob("*") if p.is_file() and "c" in p.relative_to(store).parts
    )
    chunks[len(chunks) // 2].unlink()


def _missing_metadata(store):
    (store / "zarr.json").unlink()


@pytest.mark.parametrize("damage", [_missing_chunk, _missing_metadata])
def test_a_zarr_store_with_a_file_gone_is_reprocessed(tmp_path, damage):
    write_scene(tmp_path / "in" / "a.tif", seed=1)
    assert _status(_run(tmp_path, suffix=".zarr")) == {"a.zarr": "done"}
    store = tmp_path / "out" / "a.zarr"
    files = sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file())
    assert _status(_run(tmp_path, suffix=".zarr")) == {"a.zarr": "skipped"}
    damage(store)
    assert _status(_run(tmp_path, suffix=".zarr")) == {"a.zarr": "done"}
    assert sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file()) == files


def _zero_bytes(out):
    (out / "a.tif").write_bytes(b"")


def _symlink_to_a_copy(out):
    keep = out.parent / "elsewhere.tif"
    keep.write_bytes((out / "a.tif").read_bytes())
    (out / "a.tif").unlink()
    (out / "a.tif").symlink_to(keep)


def _another_jobs_output(out):
    shutil.copy2(out / "b.tif", out / "a.tif")


def _garbage_same_size(out):
    size = (out / "a.tif").stat().st_size
    (out / "a.tif").write_bytes(b"\0" * size)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_zero_bytes, "output changed"),
        (_symlink_to_a_copy, "is a symlink"),
        (_another_jobs_output, "output changed"),
        (_garbage_same_size, "output changed"),
    ],
)
def test_a_replaced_output_is_reprocessed_and_nothing_outside_it_touched(done, damage, reason):
    tmp_path, pixels = done
    out = tmp_path / "out"
    damage(out)
    outside = snapshot(tmp_path / "in", *tmp_path.glob("elsewhere.tif"))
    report = _run(tmp_path)
    assert _status(report) == {"a.tif": "done", "b.tif": "skipped"}
    assert reason in next(r.reason for r in report.results if r.status == "done")
    assert (out / "a.tif").is_file() and not (out / "a.tif").is_symlink()
    np.testing.assert_array_equal(read(out / "a.tif"), pixels["a.tif"])
    assert_unchanged(outside, tmp_path / "in", *tmp_path.glob("elsewhere.tif"))
    assert _status(_run(tmp_path)) == {"a.tif": "skipped", "b.tif": "skipped"}


def test_a_zarr_store_is_taken_from_its_tag_after_a_rebuild(tmp_path):
    write_scene(tmp_path / "in" / "a.tif", seed=1)
    assert _status(_run(tmp_path, suffix=".zarr")) == {"a.zarr": "done"}
    store = tmp_path / "out" / "a.zarr"
    before = snapshot(store)
    _text(tmp_path / "out" / LEDGER_NAME)
    assert _status(_run(tmp_path, suffix=".zarr")) == {"a.zarr": "skipped"}
    assert_unchanged(before, store)
    assert _rows(tmp_path)["a.zarr"].output_checksum
