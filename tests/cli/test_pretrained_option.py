"""``--pretrained`` means the same in every command: one folder (DiffRIS's SD-1.5) or ``KEY=DIR``
pairs (RSRefSeg's SigLIP and SAM), parsed once and passed down unchanged to the loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from diffris.archive.processor import SegmentProcessor
from diffris.data.prompts import Prompt
from diffris.data.synthetic import write_dataset
from diffris.errors import InputError
from diffris.models.names import check_pretrained_form, parse_pretrained
from diffris_cli.app import app
from tests.inference.scenes import position_scene

runner = CliRunner()


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    """The command failed with exactly one error line and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


# -- parsing ---------------------------------------------------------------------------------


def test_one_bare_folder_or_key_pairs_come_back_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_pretrained(None) is None and parse_pretrained([]) is None
    assert parse_pretrained(["weights/sd15"]) == str(tmp_path / "weights" / "sd15")
    assert parse_pretrained(["siglip=w/siglip", "sam=w/sam"]) == {
        "siglip": str(tmp_path / "w" / "siglip"),
        "sam": str(tmp_path / "w" / "sam"),
    }
    assert parse_pretrained(["sd15=w/sd"]) == {"sd15": str(tmp_path / "w" / "sd")}
    # an "=" after a path separator belongs to a folder name
    assert parse_pretrained(["/data/a=b"]) == "/data/a=b"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["clip=/w/clip"], "unknown foundation 'clip'; use one of sd15=DIR, siglip=DIR, sam=DIR"),
        (["siglip=/a", "siglip=/b"], "--pretrained siglip= given twice"),
        (["sam="], "--pretrained sam= names no folder; write --pretrained sam=DIR"),
        (["/w/sd15", "sam=/w/sam"], "one bare folder (a model with one foundation: SD-1.5)"),
        (["/w/a", "/w/b"], "not two bare folders"),
    ],
)
def test_bad_forms_are_one_clear_line(values, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_pretrained(values)


def test_the_form_must_fit_the_model(tmp_path):
    check_pretrained_form("tiny", "/w/sd15")
    check_pretrained_form("sd15", {"sd15": "/w/sd15"})
    check_pretrained_form("rsrefseg-b", {"siglip": "/w/siglip"})  # sam from $DIFFRIS_SAM/cache
    with pytest.raises(InputError, match="bare folder, but this model loads several foundations"):
        check_pretrained_form("rsrefseg-tiny", "/w/x")
    with pytest.raises(InputError, match="--pretrained siglip=DIR is not used by model tiny"):
        check_pretrained_form("tiny", {"siglip": "/w/siglip"})
    with pytest.raises(InputError, match="--pretrained sd15=DIR is not used by model rsrefseg-l"):
        check_pretrained_form("rsrefseg-l", {"sd15": "/w/sd", "sam": "/w/sam"})
    # a trained folder: its config.json names the architecture
    folder = tmp_path / "trained"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "rsrefseg"}))
    with pytest.raises(InputError, match="name each one: --pretrained siglip=DIR --pretrained sam"):
        check_pretrained_form(folder, "/w/x")


# -- every command passes it down -------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A folder with a scene, an archive of one scene, prompts and a small dataset."""
    monkeypatch.chdir(tmp_path)
    position_scene(tmp_path / "scene.tif", 64, 64)
    (tmp_path / "scenes").mkdir()
    position_scene(tmp_path / "scenes" / "a.tif", 64, 64)
    (tmp_path / "prompts.txt").write_text("the river\n")
    write_dataset(tmp_path / "data", layout="risbench", samples=6, splits=(4, 1, 1), size=64)
    return tmp_path


COMMANDS = {
    "segment": ["segment", "scene.tif", "-t", "the river", "-o", "out.tif"],
    "archive": ["archive", "scenes", "--prompts", "prompts.txt", "-o", "masks"],
    "evaluate": ["evaluate", "-d", "synthetic", "--data-root", "data", "--image-size", "64"],
    "train": ["train", "--dataset", "synthetic", "--data-root", "data", "-o", "run"],
}


def _model(command: str, model: str) -> list[str]:
    return ["--preset", model] if command == "train" else ["--model", model]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_pair_reaches_the_loader_of_every_command(project, command):
    """``sd15=DIR`` is the folder the SD-1.5 loader checks (named in its refusal)."""
    args = [*COMMANDS[command], *_model(command, "sd15"), "--pretrained", "sd15=nowhere"]
    line = one_error_line(runner.invoke(app, args))
    assert f"--pretrained {project / 'nowhere'}" in line or f"{project / 'nowhere'} is" in line
    assert "missing unet/" in line or "does not exist" in line, line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bare_folder_for_rsrefseg_is_refused_in_one_line(project, command):
    args = [*COMMANDS[command], *_model(command, "rsrefseg-tiny"), "--pretrained", "weights"]
    line = one_error_line(runner.invoke(app, args))
    assert f"--pretrained {project / 'weights'} is a bare folder" in line
    assert "--pretrained siglip=DIR --pretrained sam=DIR" in line
    assert not (project / "run").exists() and not (project / "out.tif").exists()


def test_tiny_ignores_its_pretrained_folder_and_trains(project):
    args = [*COMMANDS["train"], "--preset", "tiny", "--pretrained", "sd15=sd", "--epochs", "1"]
    args += ["--batch-size", "4", "--image-size", "64", "--procs", "1", "--workers", "0"]
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert "is ignored: the tiny preset has its own weights" in result.output
    saved = yaml.safe_load((project / "run" / "config.yaml").read_text())
    assert saved["config"]["pretrained"] == {"sd15": str(project / "sd")}  # the mapping, kept


def test_segment_with_tiny_and_a_key_pair_runs(project):
    args = [*COMMANDS["segment"], "--model", "tiny", "--pretrained", "sd15=sd", "--tile", "64"]
    args += ["--overlap", "8"]
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert (project / "out.tif").is_file()


def test_the_archive_ships_key_pairs_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prompts = (Prompt(id="river", text="the river"),)
    processor = SegmentProcessor(
        model="tiny", prompts=prompts, pretrained={"siglip": "w/siglip", "sam": "~/sam"}
    )
    assert processor.pretrained == {
        "siglip": str(tmp_path / "w" / "siglip"),
        "sam": str(Path("~/sam").expanduser()),
    }


def test_info_checks_the_folders_given_by_key(tmp_path):
    result = runner.invoke(
        app,
        ["info", "--json", "--pretrained", f"siglip={tmp_path}/s", "--pretrained", "sam=/w/sam"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    siglip = report["rsrefseg"]["siglip"]["folders"][0]
    assert siglip["path"] == f"{tmp_path}/s" and siglip["source"] == "--pretrained siglip=DIR"
    assert report["rsrefseg"]["sam-b"]["folders"][0]["path"] == "/w/sam"
    result = runner.invoke(app, ["info", "--json", "--pretrained", f"sd15={tmp_path}/sd"])
    assert json.loads(result.stdout)["stable_diffusion"][0]["path"] == f"{tmp_path}/sd"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "dice"], "--loss 'dice' is not one of: bce, bce+dice"),
        (["--schedule", "step"], "schedule: 'step' is not a valid Schedule; valid: poly"),
        (["--select-by", "dice"], "select_by: 'dice' is not a valid SelectBy; valid: oIoU, mIoU"),
        (["--schedule", "poly", "--warmup-epochs", "2"], "--warmup-epochs 2 applies to"),
    ],
)
def test_bad_recipe_flags_are_one_line(project, flags, message):
    args = [*COMMANDS["train"], "--preset", "rsrefseg-tiny", *flags]
    assert message in one_error_line(runner.invoke(app, args))
    assert not (project / "run").exists()
