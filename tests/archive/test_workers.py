"""Worker processes and a real dask LocalCluster: the real tiny model, identical outputs, deaths."""

import os
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio

from diffris.archive.backends import InlineBackend
from diffris.archive.dask_backend import DaskBackend
from diffris.archive.ledger import Ledger
from diffris.archive.pool import ProcessPoolBackend
from diffris.archive.processor import SegmentProcessor
from diffris.archive.runner import EXIT_OK, archive
from diffris.models.names import model_identity
from tests.archive.archive_helpers import (
    OPTIONS,
    PROMPTS,
    FieldProcessor,
    field_processor,
    job_options,
    write_scene,
)

NAMES = ["a.tif", "b.tif", "c.tif"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    for index, name in enumerate(NAMES):
        write_scene(root / name, width=128, height=96, seed=index)
    return root


def _tiny(source, out, backend, model="tiny"):
    processor = SegmentProcessor(model=model, prompts=PROMPTS)
    return archive(
        source,
        out_dir=out,
        processor=processor,
        model=model,
        model_id=model_identity(model),
        prompts=PROMPTS,
        options=processor.job_options(OPTIONS),
        backend=backend,
    )


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.tags(), src.transform


def test_two_workers_and_a_local_dask_cluster_match_one_worker(
    scenes, tmp_path, restore_threads, model_preset
):
    """Each architecture's tiny model: the pool and a real dask LocalCluster on loopback write
    the masks and tags one worker writes."""
    backends = {
        # One thread everywhere: a model's probabilities differ in the last bit between
        # thread counts, which flips mask pixels lying exactly at the threshold.
        "one": InlineBackend(device="cpu", threads=1),
        "pool": ProcessPoolBackend(2, threads=1),
        "dask": DaskBackend("local", n_workers=2),
    }
    for label, backend in backends.items():
        report = _tiny(scenes, tmp_path / label, backend, model_preset)
        assert report.exit_code == EXIT_OK and report.counts["done"] == 3, report.to_dict()
    for name in NAMES:
        pixels, tags, transform = _read(tmp_path / "one" / name)
        assert pixels.any() and (pixels == 1).any()  # real masks, not blanks
        assert tags["model"] == model_preset
        for label in ("pool", "dask"):
            other_pixels, other_tags, other_transform = _read(tmp_path / label / name)
            assert np.array_equal(pixels, other_pixels), (label, name)
            assert other_tags == tags and other_transform == transform
    with Ledger.for_output(tmp_path / "pool", readonly=True) as ledger:
        workers = {row.worker for row in ledger.rows()}
    assert workers <= {"worker-0", "worker-1"} and len(workers) >= 1


def test_a_pool_worker_killed_mid_scene_is_replaced_and_the_scene_rerun(scenes, tmp_path):
    marker = tmp_path / "died"
    processor = field_processor(die_once_on="b.tif", marker=str(marker))
    report = archive(
        scenes,
        out_dir=tmp_path / "out",
        processor=processor,
        model="stand-in",
        model_id="field-v1",
        prompts=PROMPTS,
        options=job_options(),
        backend=ProcessPoolBackend(2),
    )
    assert marker.exists()  # a worker really died
    assert report.exit_code == EXIT_OK and report.counts["done"] == 3
    with Ledger.for_output(tmp_path / "out", readonly=True) as ledger:
        assert {row.status for row in ledger.rows()} == {"done"}


def test_a_dask_worker_killed_mid_run_still_ends_with_every_scene_done(scenes, tmp_path):
    marker = tmp_path / "died"
    processor = field_processor(delay=0.05, die_once_on="a.tif", marker=str(marker))
    report = archive(
        scenes,
        out_dir=tmp_path / "out",
        processor=processor,
        model="stand-in",
        model_id="field-v1",
        prompts=PROMPTS,
        options=job_options(),
        backend=DaskBackend("local", n_workers=2),
    )
    assert marker.exists()
    assert report.exit_code == EXIT_OK and report.counts["done"] == 3, report.to_dict()
    with Ledger.for_output(tmp_path / "out", readonly=True) as ledger:
        rows = ledger.rows()
    assert {row.status for row in rows} == {"done"} and all(row.failures == 0 for row in rows)
    for name in NAMES:
        assert (tmp_path / "out" / name).is_file()


def test_one_tall_scene_split_across_two_workers_equals_one_worker(tmp_path, restore_threads):
    write_scene(tmp_path / "in" / "tall.tif", width=128, height=600, seed=9)
    processor = SegmentProcessor(model="tiny", prompts=PROMPTS)
    common = dict(
        processor=processor,
        model="tiny",
        model_id=model_identity("tiny"),
        prompts=PROMPTS,
        options=processor.job_options(OPTIONS),
    )
    whole = archive(
        tmp_path / "in", out_dir=tmp_path / "whole", backend=InlineBackend(threads=1), **common
    )
    split = archive(
        tmp_path / "in",
        out_dir=tmp_path / "split",
        split_rows=256,
        split_align=OPTIONS.tile,
        backend=ProcessPoolBackend(2, threads=1),
        **common,
    )
    assert whole.exit_code == split.exit_code == EXIT_OK
    one, two = _read(tmp_path / "whole" / "tall.tif"), _read(tmp_path / "split" / "tall.tif")
    assert np.array_equal(one[0], two[0]) and one[2] == two[2]


@dataclass
class CountingProcessor(FieldProcessor):
    """Appends each scene it processes to ``log``; once, its process dies on its second scene,
    after the driver has recorded its first one as done."""

    log: str = ""

    def __call__(self, job):  # type: ignore[no-untyped-def]
        first = getattr(self, "first", None)
        if first is None:
            self.first = job
        elif self.marker and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            _wait_until_done(first)
            os.kill(os.getpid(), signal.SIGKILL)
        with open(self.log, "a") as handle:
            handle.write(job.name + "\n")
        return super().__call__(job)


def _wait_until_done(job, timeout=30.0):
    deadline = time.monotonic() + timeout
    with Ledger.for_output(Path(job.output).parent, readonly=True) as ledger:
        while ledger.row(job.key).status != "done":
            assert time.monotonic() < deadline, "the driver never recorded the first scene"
            time.sleep(0.05)
    time.sleep(0.5)  # and the driver's release has reached the scheduler


def test_a_dask_worker_death_never_recomputes_scenes_already_recorded(tmp_path):
    names = [f"s{index}.tif" for index in range(8)]
    for index, name in enumerate(names):
        write_scene(tmp_path / "in" / name, seed=index)
    log, marker = tmp_path / "processed.log", tmp_path / "died"
    processor = CountingProcessor(
        model="stand-in", prompts=PROMPTS, delay=0.1, marker=str(marker), log=str(log)
    )
    report = archive(
        tmp_path / "in",
        out_dir=tmp_path / "out",
        processor=processor,
        model="stand-in",
        model_id="field-v1",
        prompts=PROMPTS,
        options=job_options(),
        backend=DaskBackend("local", n_workers=2),
    )
    assert marker.exists()  # a worker died holding the result of its first scene
    assert report.exit_code == EXIT_OK and report.counts["done"] == len(names)
    assert Counter(log.read_text().split()) == Counter(names)  # each scene processed once
