"""``diffris archive catalog.json --stac``: item ids name outputs, reruns resume, and the
folder's catalog.json is readable after every scene, even when a write is killed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pystac
from typer.testing import CliRunner

from diffris.archive.runner import EXIT_OK, archive
from diffris.geo.sinks.publish import clean_stale_partials
from diffris.stac.catalog import ArchiveCatalog
from diffris_cli.app import app
from tests.archive.archive_helpers import PROMPTS, field_processor, job_options, tiny_archive_args
from tests.stac.schema_store import core_validator, validate_item
from tests.stac.stac_files import write_catalog

runner = CliRunner()


def _archive(catalog: Path, out: Path, **kw: object):
    return archive(
        catalog,
        out_dir=out,
        processor=field_processor(),
        model="stand-in",
        model_id="field-v1",
        prompts=PROMPTS,
        options=job_options(),
        stac=True,
        **kw,
    )


def _catalog_ids(out: Path) -> list[str]:
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    return sorted(item.id for item in catalog.get_items(recursive=True))


def test_archive_over_a_catalog_names_outputs_by_item_id_and_publishes_a_catalog(tmp_path):
    source = write_catalog(tmp_path, ["T33_a", "T33_b", "T33_c"])
    out = tmp_path / "out"
    seen: set[tuple[int, int]] = set()

    def progress(state):  # the driver updates the catalog before it reports a scene done
        if state.done:
            seen.add((state.done, len(_catalog_ids(out))))

    report = _archive(source, out, progress=progress)
    assert report.exit_code == EXIT_OK, report.to_dict()
    assert sorted(p.name for p in out.glob("*.tif")) == ["T33_a.tif", "T33_b.tif", "T33_c.tif"]
    assert sorted(seen) == [(1, 1), (2, 2), (3, 3)]  # updated after each scene
    assert _catalog_ids(out) == ["T33_a", "T33_b", "T33_c"]
    core_validator("catalog").validate(json.loads((out / "catalog.json").read_text()))
    for item in pystac.Catalog.from_file(str(out / "catalog.json")).get_items():
        validate_item(item.to_dict(include_self_link=False))
        (link,) = [link for link in item.links if link.rel == "derived_from"]
        source_item = pystac.Item.from_file(link.get_absolute_href())
        assert source_item.id == item.id  # the input item it came from
        assert item.properties["diffris:model"] == "field-v1"
        assert Path(item.assets["data"].get_absolute_href()) == out / f"{item.id}.tif"


def test_a_rerun_resumes_skips_done_scenes_and_adds_new_items(tmp_path):
    source = write_catalog(tmp_path, ["a", "b"])
    out = tmp_path / "out"
    assert _archive(source, out).counts["done"] == 2
    before = (out / "catalog.json").read_text()
    again = _archive(source, out)
    assert again.counts == {"done": 0, "skipped": 2, "failed": 0, "given-up": 0}
    assert (out / "catalog.json").read_text() == before
    source = write_catalog(tmp_path, ["a", "b", "c"])
    third = _archive(source, out)
    assert (third.counts["done"], third.counts["skipped"]) == (1, 2)
    assert _catalog_ids(out) == ["a", "b", "c"]


def test_a_deleted_catalog_is_rebuilt_from_the_done_scenes(tmp_path):
    source = write_catalog(tmp_path, ["a", "b"])
    out = tmp_path / "out"
    _archive(source, out)
    (out / "catalog.json").unlink()
    (out / "b.stac.json").unlink()
    assert _archive(source, out).counts["skipped"] == 2
    assert _catalog_ids(out) == ["a", "b"]


def test_a_missing_asset_file_fails_as_one_scene_and_the_others_publish(tmp_path):
    source = write_catalog(tmp_path, ["a", "b"])
    (tmp_path / "images" / "b.tif").unlink()
    out = tmp_path / "out"
    report = _archive(source, out)
    assert (report.counts["done"], report.counts["failed"]) == (1, 1)
    assert _catalog_ids(out) == ["a"]


def test_a_killed_catalog_write_never_leaves_an_unreadable_catalog(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "seed.stac.json").write_text("{}")
    ArchiveCatalog(out).add(out / "seed.stac.json")
    # a writer adding items as fast as it can, killed at arbitrary moments
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from diffris.stac.catalog import ArchiveCatalog
        out = Path({str(out)!r})
        catalog = ArchiveCatalog(out)
        catalog.add(out / "seed.stac.json")  # pystac imported: writes start at once
        print("writing", flush=True)
        for i in range(100000):
            item = out / f"i{{i}}.stac.json"
            item.write_text("{{}}")
            catalog.add(item)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    counts = []
    for delay in (0.05, 0.2, 0.35):
        writer = subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "writing"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
        counts.append(sum(link.rel == "item" for link in catalog.links))
        json.loads((out / "catalog.json").read_text())  # whole, never torn
    assert counts[0] > 1 and counts == sorted(counts)  # it was killed while adding items
    # the next run's clean-up removes what a killed write left
    removed = clean_stale_partials(out)
    assert not list(out.glob(".catalog.json.partial-*")), removed


def test_archive_cli_over_a_catalog_with_stac(tmp_path):
    source = write_catalog(tmp_path, ["x"])
    prompts = tmp_path / "p.txt"
    prompts.write_text("the river\n")
    out = tmp_path / "out"
    result = runner.invoke(app, tiny_archive_args(source, prompts, out, "--stac", "-q"))
    assert result.exit_code == 0, result.output
    assert _catalog_ids(out) == ["x"]
    item = json.loads((out / "x.stac.json").read_text())
    validate_item(item)
    assert item["assets"]["data"]["raster:bands"][0]["description"] == "the river"


def test_discovery_names_item_scenes_by_id_and_their_jobs_read_the_items_bands(tmp_path):
    from diffris.archive.inputs import discover_scenes
    from diffris.archive.jobs import make_jobs
    from tests.stac.stac_files import item_dict, write_json

    (tmp_path / "img").mkdir()
    for name in ("p", "q"):
        (tmp_path / "img" / f"{name}.tif").touch()
    bgr = [{"common_name": c} for c in ("blue", "green", "red")]
    features = [item_dict("p", "img/p.tif", bands=bgr), item_dict("q/2", "img/q.tif")]
    found = write_json(tmp_path / "found.json", {"type": "FeatureCollection", "features": features})
    scenes = discover_scenes(found)
    assert [(s.name, s.source) for s in scenes] == [
        ("p.tif", str(tmp_path / "img" / "p.tif")),
        ("q_2.tif", str(tmp_path / "img" / "q.tif")),
    ]
    jobs = make_jobs(
        scenes,
        out_dir=tmp_path / "out",
        model="m",
        model_id="m",
        prompts=PROMPTS,
        options=job_options(),
    )
    assert [Path(j.output).name for j in jobs] == ["p.tif", "q_2.tif"]
    assert [j.options["bands"] for j in jobs] == [[3, 2, 1], None]
    assert jobs[0].stac.item_id == "p" and jobs[1].stac.item_id == "q/2"
