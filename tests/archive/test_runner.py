"""The runner over real SQLite and real GeoTIFFs, scenes processed in this process."""

import time

import numpy as np
import pytest
import rasterio

from diffris.archive.jobs import JOB_TAG
from diffris.archive.ledger import SCHEMA_VERSION, Ledger
from diffris.archive.lock import EXIT_LOCKED, ArchiveLockedError, OutputLock
from diffris.archive.runner import EXIT_FAILED, EXIT_OK, archive, run_archive
from diffris.archive.split import PARTS_DIR
from diffris.data.prompts import Prompt, load_prompts
from diffris.errors import InputError
from tests.archive.archive_helpers import (
    PROMPTS,
    BoxProcessor,
    field_processor,
    job_options,
    read,
    write_corrupt,
    write_scene,
)


def _run(tmp_path, prompts=PROMPTS, **kw):
    processor = kw.pop("processor", None) or field_processor()
    processor.prompts = tuple(prompts)
    return archive(
        tmp_path / "in",
        out_dir=tmp_path / "out",
        processor=processor,
        model="stand-in",
        model_id="field-v1",
        prompts=prompts,
        options=job_options(),
        **kw,
    )


def _status(report):
    return {r.output.rsplit("/", 1)[1]: r.status for r in report.results}


@pytest.fixture
def three(tmp_path):
    write_scene(tmp_path / "in" / "a.tif", seed=1)
    write_corrupt(tmp_path / "in" / "b.tif")
    write_scene(tmp_path / "in" / "c.tif", seed=3)
    return tmp_path


def test_a_corrupt_scene_fails_alone_and_only_it_is_rerun(three):
    report = _run(three)
    assert _status(report) == {"a.tif": "done", "b.tif": "failed", "c.tif": "done"}
    assert report.exit_code == EXIT_FAILED
    out = three / "out"
    assert (out / "a.tif").is_file() and (out / "c.tif").is_file() and not (out / "b.tif").exists()
    with Ledger.for_output(out, readonly=True) as ledger:
        rows = {row.input.rsplit("/", 1)[1]: row for row in ledger.rows()}
    assert rows["b.tif"].status == "failed" and "not a raster" in rows["b.tif"].error
    assert rows["b.tif"].attempts == rows["b.tif"].failures == 1
    assert rows["a.tif"].status == "done" and rows["a.tif"].seconds is not None
    with rasterio.open(out / "a.tif") as src:
        assert src.tags()[JOB_TAG] == rows["a.tif"].digest
    before = {name: (out / name).stat().st_mtime_ns for name in ("a.tif", "c.tif")}

    again = _run(three)
    assert _status(again) == {"a.tif": "skipped", "b.tif": "failed", "c.tif": "skipped"}
    assert next(r for r in again.results if r.status == "failed").reason == "retry 1 of 2"
    assert {name: (out / name).stat().st_mtime_ns for name in before} == before

    write_scene(three / "in" / "b.tif", seed=2)  # the scene arrives complete: it runs, all done
    fixed = _run(three)
    assert _status(fixed)["b.tif"] == "done" and fixed.exit_code == EXIT_OK


def test_retries_are_exhausted_then_the_scene_is_given_up_until_it_changes(three):
    for _ in range(2):
        assert _status(_run(three, retries=1))["b.tif"] == "failed"
    given_up = _run(three, retries=1)
    assert _status(given_up)["b.tif"] == "given-up"
    assert given_up.exit_code == EXIT_FAILED
    assert "not a raster" in next(r.error for r in given_up.results if r.status == "given-up")
    with Ledger.for_output(three / "out", readonly=True) as ledger:
        summary = ledger.summary()
    assert summary.counts["failed"] == 1 and summary.counts["given_up"] == 1
    assert summary.to_dict()["last_run"]["exit_code"] == EXIT_FAILED
    write_corrupt(three / "in" / "b.tif")
    (three / "in" / "b.tif").write_bytes(b"changed, still broken")
    assert _status(_run(three, retries=1))["b.tif"] == "failed"  # a changed input is tried again


def test_touching_nothing_reprocesses_nothing_and_changing_things_does(tmp_path):
    for index in range(3):
        write_scene(tmp_path / "in" / f"s{index}.tif", seed=index)
    assert _run(tmp_path).counts["done"] == 3
    started = time.perf_counter()
    noop = _run(tmp_path)
    assert noop.counts == {"done": 0, "skipped": 3, "failed": 0, "given-up": 0}
    assert noop.exit_code == EXIT_OK and time.perf_counter() - started < 10

    prompt_file = tmp_path / "prompts.yaml"
    prompt_file.write_text("- {id: roofs, text: red roofs}\n- {id: fields, text: ripe wheat}\n")
    changed = _run(tmp_path, prompts=load_prompts(prompt_file))
    assert changed.counts["done"] == 3
    assert {r.reason for r in changed.results} == {"new"}  # a new prompt set is a new job

    prompts = load_prompts(prompt_file)
    (tmp_path / "out" / "s0.tif").unlink()
    write_scene(tmp_path / "in" / "s1.tif", seed=11)
    reasons = {r.output.rsplit("/", 1)[1]: r.reason for r in _run(tmp_path, prompts).results}
    assert reasons == {"s0.tif": "output missing", "s1.tif": "input changed", "s2.tif": "done"}

    foreign = tmp_path / "out" / "s2.tif"
    with rasterio.open(foreign, "r+") as dst:
        dst.update_tags(**{JOB_TAG: "someone-else"})
    rerun = _run(tmp_path, prompts)
    assert _status(rerun) == {"s0.tif": "skipped", "s1.tif": "skipped", "s2.tif": "done"}

    with Ledger.for_output(tmp_path / "out", readonly=True) as ledger:
        current, every = ledger.rows(), ledger.rows(all_rows=True)
    assert len(current) == 3 and len(every) == 6  # old prompt set's rows are history


def test_prompt_file_change_output_differs(tmp_path):
    write_scene(tmp_path / "in" / "s.tif")
    _run(tmp_path)
    first = read(tmp_path / "out" / "s.tif")
    _run(tmp_path, prompts=[Prompt(id="roofs", text="grey roofs"), PROMPTS[1]])
    assert not np.array_equal(read(tmp_path / "out" / "s.tif")[0], first[0])


def test_a_locked_folder_fails_at_once_with_the_holder_named(tmp_path):
    write_scene(tmp_path / "in" / "s.tif")
    with OutputLock(tmp_path / "out"):
        started = time.perf_counter()
        with pytest.raises(
            ArchiveLockedError, match=r"another diffris archive run \(pid \d+ on"
        ) as err:
            _run(tmp_path)
        assert time.perf_counter() - started < 2
        assert err.value.exit_code == EXIT_LOCKED == 75
        assert str(tmp_path / "out" / ".diffris-archive.lock") in str(err.value)
    assert _run(tmp_path).exit_code == EXIT_OK


def test_a_tall_scene_split_into_row_parts_equals_the_unsplit_output(tmp_path, caplog):
    caplog.set_level("INFO", logger="diffris.archive")
    write_scene(tmp_path / "in" / "tall.tif", width=96, height=300, seed=5)
    write_scene(tmp_path / "in" / "small.tif", width=96, height=60, seed=6)
    common = dict(processor=BoxProcessor(), model="box", model_id="box", prompts=PROMPTS)
    common["options"] = {"kernel": 5}
    whole = archive(tmp_path / "in", out_dir=tmp_path / "whole", **common)
    split = archive(
        tmp_path / "in", out_dir=tmp_path / "split", split_rows=64, split_align=64, **common
    )
    assert whole.exit_code == split.exit_code == EXIT_OK
    assert "300 rows split into 5 parts" in caplog.text
    for name in ("tall.tif", "small.tif"):
        with (
            rasterio.open(tmp_path / "whole" / name) as a,
            rasterio.open(tmp_path / "split" / name) as b,
        ):
            assert np.array_equal(a.read(), b.read())
            assert (a.transform, a.crs, a.shape, a.descriptions) == (
                b.transform,
                b.crs,
                b.shape,
                b.descriptions,
            )
            assert b.tags()[JOB_TAG] == a.tags()[JOB_TAG]
    assert not (tmp_path / "split" / PARTS_DIR).exists() or not any(
        (tmp_path / "split" / PARTS_DIR).iterdir()
    )
    again = archive(
        tmp_path / "in", out_dir=tmp_path / "split", split_rows=64, split_align=64, **common
    )
    assert again.counts["skipped"] == 2


def test_bad_arguments_and_newer_ledgers_are_refused(tmp_path):
    write_scene(tmp_path / "in" / "s.tif")
    with pytest.raises(InputError, match="--retries -1"):
        _run(tmp_path, retries=-1)
    with pytest.raises(InputError, match="--split-rows 10"):
        run_archive([], out_dir=tmp_path / "out", processor=field_processor(), split_rows=10)
    with Ledger.for_output(tmp_path / "out") as ledger:
        ledger._db.execute(
            "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(InputError, match="upgrade diffris"):
        Ledger.for_output(tmp_path / "out")
