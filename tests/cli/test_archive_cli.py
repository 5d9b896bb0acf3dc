"""``diffris archive`` from the command line: real SQLite ledger, real files, the tiny models."""

import json

from typer.testing import CliRunner

from diffris.archive.lock import EXIT_LOCKED, OutputLock
from diffris.geo.gdal_cache import resolve_gdal_cache
from diffris.models.checkpoint import save_trained
from diffris.models.names import model_identity
from diffris.models.registry import build_model
from diffris_cli.app import app
from tests.archive.archive_helpers import tiny_archive_args, write_corrupt, write_scene
from tests.conftest import MODEL_PRESETS

runner = CliRunner()


def _archive(source, out, prompts, *extra, model="tiny"):
    return runner.invoke(
        app, tiny_archive_args(source, prompts, out, "--json", *extra, model=model)
    )


def _statuses(result) -> dict[str, str]:
    return {r["input"].rsplit("/", 1)[-1]: r["status"] for r in json.loads(result.stdout)["scenes"]}


def test_each_architecture_is_its_own_model_in_the_ledger(tmp_path):
    """Switching --model between architectures (preset or trained folder) reprocesses every
    scene, and the ledger records which model wrote each row."""
    write_scene(tmp_path / "in" / "a.tif", seed=1)
    prompts = tmp_path / "p.txt"
    prompts.write_text("red roofs\n")
    folders = {
        preset: save_trained(build_model(preset, seed=4), tmp_path / "runs" / preset)
        for preset in MODEL_PRESETS
    }
    models = [*MODEL_PRESETS, *map(str, folders.values())]
    out = tmp_path / "out"
    recorded = []
    for model in models:
        result = _archive(tmp_path / "in", out, prompts, model=model)
        assert result.exit_code == 0, result.output
        assert _statuses(result) == {"a.tif": "done"}, model  # a new model: run again
        status = runner.invoke(app, ["archive", "status", "-o", str(out), "--json"])
        (row,) = [r for r in json.loads(status.stdout)["rows"] if r["status"] == "done"]
        recorded.append(row["model_id"])
    assert recorded == [model_identity(model) for model in models] and len(set(recorded)) == 4
    again = _archive(tmp_path / "in", out, prompts, model=models[-1])  # the one that wrote it
    assert _statuses(again) == {"a.tif": "skipped"}


def test_archive_run_rerun_and_status(tmp_path):
    incoming = tmp_path / "incoming"
    write_scene(incoming / "a.tif", seed=1)
    write_scene(incoming / "sub" / "b.tif", seed=2)
    write_corrupt(incoming / "c.tif")
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("- id: roofs\n  text: the red roofs\n")
    out = tmp_path / "masks"

    first = _archive(incoming, out, prompts)
    assert first.exit_code == 1, first.output
    statuses = {
        r["input"].rsplit("/", 1)[-1]: r["status"] for r in json.loads(first.stdout)["scenes"]
    }
    assert statuses == {"a.tif": "done", "b.tif": "done", "c.tif": "failed"}
    assert (out / "a.tif").is_file() and (out / "sub" / "b.tif").is_file()
    assert not (out / "c.tif").exists()

    again = _archive(incoming, out, prompts)
    statuses = {
        r["input"].rsplit("/", 1)[-1]: r["status"] for r in json.loads(again.stdout)["scenes"]
    }
    assert statuses == {"a.tif": "skipped", "b.tif": "skipped", "c.tif": "failed"}

    status = runner.invoke(app, ["archive", "status", "-o", str(out), "--json"])
    assert status.exit_code == 0, status.output
    summary = json.loads(status.stdout)
    assert summary["counts"]["done"] == 2 and summary["counts"]["failed"] == 1
    (failed,) = [row for row in summary["rows"] if row["status"] == "failed"]
    assert failed["input"].endswith("c.tif") and failed["error"]


def test_a_second_run_exits_at_once_with_the_lock_message(tmp_path):
    write_scene(tmp_path / "in" / "a.tif")
    prompts = tmp_path / "p.txt"
    prompts.write_text("red roofs\n")
    with OutputLock(tmp_path / "out"):
        result = _archive(tmp_path / "in", tmp_path / "out", prompts)
    assert result.exit_code == EXIT_LOCKED
    assert "holds" in result.output and "Traceback" not in result.output


def test_status_of_a_folder_without_a_ledger_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["archive", "status", "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert "has no archive ledger" in result.output and "Traceback" not in result.output


def test_a_scene_too_large_for_the_memory_budget_fails_alone_in_one_line(tmp_path):
    """The archive knows a scene's size only when it starts it: that scene fails before its
    first tile, the ledger's error names the memory needed and the fixes, the others run."""
    incoming = tmp_path / "incoming"
    write_scene(incoming / "small.tif", seed=1)
    write_scene(incoming / "wide.tif", seed=2, width=4096)
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("- id: roofs\n  text: the red roofs\n")
    out = tmp_path / "masks"

    # the estimate counts GDAL's block cache (the run's bound), then the rows: small ~0.5 MB
    # more, wide ~7 MB
    budget = f"{(resolve_gdal_cache().size >> 20) + 3}M"
    result = _archive(incoming, out, prompts, "--max-memory", budget)
    assert result.exit_code == 1, result.output
    scenes = {r["input"].rsplit("/", 1)[-1]: r for r in json.loads(result.stdout)["scenes"]}
    assert scenes["small.tif"]["status"] == "done", scenes["small.tif"]["error"]
    wide = scenes["wide.tif"]
    assert wide["status"] == "failed" and "memory" in wide["error"] and "\n" not in wide["error"]
    assert not (out / "wide.tif").exists()
