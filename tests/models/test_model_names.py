"""What ``--model`` names: a preset, a trained-model folder, or a clear refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffris.errors import InputError, InputNotFoundError, WeightsNotFoundError
from diffris.models.loading import load_model
from diffris.models.names import model_identity, resolve_model
from diffris_cli.app import app


@pytest.mark.parametrize("name", ["runs/best", "./best", "~/no-such-diffris-model", "../x"])
def test_a_missing_path_is_a_missing_folder_not_an_unknown_model(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    folder = Path(name).expanduser()
    with pytest.raises(InputNotFoundError, match=f"^model folder {folder} does not exist;"):
        resolve_model(name)
    with pytest.raises(InputNotFoundError, match="does not exist"):
        load_model(name)
    with pytest.raises(InputNotFoundError, match="does not exist"):
        model_identity(name)  # archive names the model before it writes its ledger


def test_an_existing_folder_or_file_without_a_model_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "best").mkdir()  # exists, so a bare name is a folder
    with pytest.raises(WeightsNotFoundError, match=r"^best is not a trained-model folder \(no "):
        resolve_model("best")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="model.safetensors is a file, not a trained-model"):
        resolve_model("model.safetensors")


def test_a_bare_unknown_name_lists_the_presets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = (
        "^unknown model 'sd21'; choose one of: tiny, sd15, rsrefseg-tiny, rsrefseg-b, rsrefseg-l,"
        " or a trained-model folder$"
    )
    with pytest.raises(InputError, match=message):
        resolve_model("sd21")
    (tmp_path / "tiny").mkdir()
    assert resolve_model("tiny") == "tiny"  # a preset wins over a folder of that name
    with pytest.raises(WeightsNotFoundError, match="no config.json"):
        resolve_model("./tiny")


def test_segment_with_a_missing_model_folder_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scene = Path(__file__).parents[2] / "examples" / "scene.tif"
    args = ["segment", str(scene), "-t", "roads", "-o", "m.tif", "--model", "runs/best"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "error: model folder runs/best does not exist; give a trained-model folder (written by "
        "diffris train) or a preset: tiny, sd15, rsrefseg-tiny, rsrefseg-b, rsrefseg-l"
    ]
    assert not list(tmp_path.iterdir())


def test_the_light_preset_list_is_the_registry() -> None:
    """``--model`` is checked from names.PRESETS before torch loads: it must name every preset."""
    from diffris.models.names import PRESETS
    from diffris.models.registry import MODEL_REGISTRY

    assert tuple(MODEL_REGISTRY) == PRESETS


def test_evaluation_input_size_follows_the_training_then_the_recipe(tmp_path: Path) -> None:
    import json

    from diffris.models.names import input_size

    assert input_size("tiny") == 512 and input_size("rsrefseg-tiny") == 1024
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "config.json").write_text(json.dumps({"preset": "rsrefseg-tiny"}))
    assert input_size(trained) == 1024  # no metadata: the preset's recipe
    metadata = {"training": {"config": {"image_size": 256}}}
    (trained / "metadata.json").write_text(json.dumps(metadata))
    assert input_size(trained) == 256  # the size it was trained at
    assert input_size(tmp_path / "nowhere") == 512
