"""``segment`` with a demo-grade model says, once, when a scene is not synthetic."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffris.inference.demo_grade import RSREFSEG_TINY_FINGERPRINT, TINY_FINGERPRINT, is_demo_grade
from diffris.models.checkpoint import load_trained, save_trained
from diffris.models.diffris.build import build_diffris
from diffris.models.diffris.model import BackboneIdentity
from diffris.models.registry import build_model
from diffris.models.rsrefseg.config import RSRefSegIdentity
from diffris_cli.app import app
from tests.inference.scenes import position_scene

runner = CliRunner()
WARNING = "is not a synthetic scene"
DEMO_MODEL = Path(__file__).resolve().parents[2] / "examples" / "models" / "demo"


def _segment(scenes: list[Path], out: Path, model: str | Path = "tiny") -> str:
    args = ["segment", *map(str, scenes), "-t", "the roads", "-o", str(out), "--model", str(model)]
    result = runner.invoke(app, [*args, "--tile", "256", "-q"])
    assert result.exit_code == 0, result.output
    return result.output


def test_tiny_on_real_scenes_warns_once(tmp_path: Path, model_preset: str) -> None:
    scenes = [position_scene(tmp_path / f"real{i}.tif", 256, 256) for i in range(2)]
    output = _segment(scenes, tmp_path / "masks", model_preset)
    lines = [line for line in output.splitlines() if WARNING in line]
    assert len(lines) == 1, output
    assert "real0.tif and 1 other scene(s)" in lines[0] and "meaningless" in lines[0]
    assert repr(model_preset) in lines[0]


def test_a_folder_trained_on_rsrefseg_tiny_warns(tmp_path: Path) -> None:
    folder = save_trained(build_model("rsrefseg-tiny", seed=1), tmp_path / "run")
    output = _segment([position_scene(tmp_path / "real.tif", 256, 256)], tmp_path / "m.tif", folder)
    assert sum(WARNING in line for line in output.splitlines()) == 1, output


def test_the_rsrefseg_tiny_fingerprint_follows_its_weights() -> None:
    """The constant follows the preset; the same random weights loaded as folders through the
    real presets' path are demo-grade by fingerprint, real ones are not."""
    backbone = build_model("rsrefseg-tiny", seed=0).config.backbone
    assert backbone.fingerprint == RSREFSEG_TINY_FINGERPRINT
    assert is_demo_grade(RSRefSegIdentity(preset="rsrefseg-b", fingerprint=backbone.fingerprint))
    assert not is_demo_grade(RSRefSegIdentity(preset="rsrefseg-b", fingerprint="0123456789abcdef"))


def test_tiny_on_a_synthetic_scene_does_not_warn(tmp_path: Path, model_preset: str) -> None:
    scene = tmp_path / "synthetic.tif"
    made = runner.invoke(app, ["synth", "scene", str(scene), "--size", "256", "--seed", "3"])
    assert made.exit_code == 0, made.output
    assert WARNING not in _segment([scene], tmp_path / "masks.tif", model_preset)


@pytest.mark.skipif(not (DEMO_MODEL / "config.json").is_file(), reason="no bundled demo model")
def test_the_demo_model_and_a_tiny_folder_are_demo_grade(tmp_path: Path) -> None:
    assert is_demo_grade(load_trained(DEMO_MODEL).config.backbone)
    # the constant follows the preset's weights
    assert build_diffris("tiny").config.backbone.fingerprint == TINY_FINGERPRINT
    # a tiny backbone loaded through the sd15 path is the same random backbone
    assert is_demo_grade(BackboneIdentity(preset="sd15", fingerprint=TINY_FINGERPRINT))
    assert not is_demo_grade(BackboneIdentity(preset="sd15", fingerprint="0123456789abcdef"))


def test_json_output_stays_machine_readable(tmp_path: Path) -> None:
    scene = position_scene(tmp_path / "real.tif", 256, 256)
    args = ["segment", str(scene), "-t", "roads", "-o", str(tmp_path / "m.tif"), "--model", "tiny"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["failed"] == []
    assert WARNING in result.stderr
