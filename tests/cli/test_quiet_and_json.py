"""``-q`` means one thing before and after the command; ``--json`` is a flag everywhere."""

import json

import pytest
from typer.testing import CliRunner

from diffris_cli.app import app
from tests.archive.archive_helpers import write_scene
from tests.inference.scenes import position_scene

runner = CliRunner()


@pytest.fixture
def segment_args(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 128, 128)
    return ["segment", str(scene), "-t", "x", "-o", str(tmp_path / "m.tif"), "--model", "tiny"]


def _info_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if " INFO " in line]


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_means_the_same_before_and_after_the_command(segment_args, where):
    loud = runner.invoke(app, [*segment_args, "--tile", "128", "--overwrite"])
    assert loud.exit_code == 0, loud.output
    assert _info_lines(loud.stderr) and "diffris segment" in loud.stdout  # what -q silences
    args = ["-q", *segment_args] if where == "before" else [*segment_args, "-q"]
    quiet = runner.invoke(app, [*args, "--tile", "128", "--overwrite"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "" and not _info_lines(quiet.stderr), quiet.output


def test_quiet_still_prints_the_answer_asked_for(segment_args):
    result = runner.invoke(app, ["-q", *segment_args, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dry_run"] is True


def test_every_command_takes_json_as_a_flag():
    for command in (["segment"], ["archive"], ["archive", "status"], ["evaluate"], ["info"]):
        help_text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "100"}).stdout
        (row,) = [
            line
            for line in help_text.splitlines()
            if line.startswith("│ ") and "--json" in line[:30]
        ]
        assert "PATH" not in row and "Print the result as one JSON object on stdout" in row


@pytest.mark.parametrize(
    ("value", "expected"),
    [("scores.json", "write them to a file with -o scores.json"), ("-", "drop the '-'")],
)
def test_the_old_evaluate_json_path_is_one_usage_line_naming_the_new_flag(
    tmp_path, value, expected
):
    result = runner.invoke(
        app,
        ["evaluate", "-d", "refsegrs", "--data-root", str(tmp_path), "--json", value],
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: --json takes no value") and expected in line
    assert not (tmp_path / "scores.json").exists()


def test_archive_takes_the_same_quiet(tmp_path):
    write_scene(tmp_path / "in" / "a.tif")
    prompts = tmp_path / "p.txt"
    prompts.write_text("red roofs\n")
    args = ["archive", str(tmp_path / "in"), "--prompts", str(prompts), "-o", str(tmp_path / "out")]
    args += ["--model", "tiny", "--tile", "64", "--overlap", "16", "--threads", "1"]
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and not _info_lines(result.stderr), result.output
    again = runner.invoke(app, args)  # not quiet: the run summary (nothing to do this time)
    assert "1 skipped" in again.stdout, again.output
