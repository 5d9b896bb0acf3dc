import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffris.errors import WeightsNotFoundError
from diffris.models.diffris.build import resolve_sd15
from diffris.models.names import PRESETS
from diffris_cli.app import app

runner = CliRunner()


def test_info_json_reports_versions_devices_and_weight_search(tmp_path, monkeypatch):
    sd = tmp_path / "sd"
    for sub in ("unet", "vae", "text_encoder"):
        (sd / sub).mkdir(parents=True)
    monkeypatch.setenv("DIFFRIS_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["info", "--pretrained", str(sd), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["versions"]["torch"]
    assert report["devices"][0]["device"] == "cpu"
    first = report["stable_diffusion"][0]
    assert first["path"] == str(sd) and first["found"] is False
    assert first["missing"] == ["tokenizer"] and first["status"] == "missing tokenizer/"
    assert report["checkpoint_cache"] == str(tmp_path / "home" / "models")
    (sd / "tokenizer").mkdir()
    result = runner.invoke(app, ["info", "--pretrained", str(sd), "--json"])
    first = json.loads(result.stdout)["stable_diffusion"][0]
    assert first["found"] is False and first["missing"] == []  # empty sub-folders load nothing
    assert "unet/ has no config.json" in first["problems"]


def _sd_folder(root: Path, weights: dict[str, str]) -> Path:
    """A diffusers-layout folder whose parts hold the weight file named in ``weights``."""
    for sub, name in weights.items():
        (root / sub).mkdir(parents=True)
        (root / sub / "config.json").write_text("{}")
        (root / sub / name).write_bytes(b"weights")
    bundled = Path(__file__).parents[2] / "diffris" / "assets" / "clip_tokenizer"
    shutil.copytree(bundled, root / "tokenizer")
    return root


PICKLED = {
    "unet": "diffusion_pytorch_model.bin",
    "vae": "diffusion_pytorch_model.bin",
    "text_encoder": "pytorch_model.bin",
}


def test_info_does_not_call_a_folder_of_pickles_found(tmp_path, monkeypatch):
    pickles = _sd_folder(tmp_path / "pickles", PICKLED)
    monkeypatch.setenv("DIFFRIS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DIFFRIS_SD15", str(pickles))
    result = runner.invoke(app, ["info", "--json"])
    first = json.loads(result.stdout)["stable_diffusion"][0]
    assert first["path"] == str(pickles) and first["found"] is False
    assert first["problems"] == [
        "unet/ has only pickled weights (diffusion_pytorch_model.bin), no safetensors",
        "vae/ has only pickled weights (diffusion_pytorch_model.bin), no safetensors",
        "text_encoder/ has only pickled weights (pytorch_model.bin), no safetensors",
    ]
    table = runner.invoke(app, ["info"], env={"COLUMNS": "400"}).stdout
    (row,) = [line for line in table.splitlines() if str(pickles) in line]
    assert "unet/ has only pickled weights" in row and "found" not in row
    # the loader's search skips it too, and says why
    with pytest.raises(WeightsNotFoundError, match="unet/ has only pickled weights"):
        resolve_sd15(None, allow_download=False)


@pytest.mark.parametrize(
    "weights",
    [
        {"unet": "diffusion_pytorch_model.safetensors"},
        {"unet": "diffusion_pytorch_model.fp16.safetensors"},
        {"unet": "diffusion_pytorch_model.safetensors.index.json"},
    ],
    ids=["plain", "fp16-variant", "sharded"],
)
def test_info_finds_what_the_loader_reads(tmp_path, weights):
    names = {"vae": "diffusion_pytorch_model.safetensors", "text_encoder": "model.safetensors"}
    folder = _sd_folder(tmp_path / "sd", names | weights)
    result = runner.invoke(app, ["info", "--pretrained", str(folder), "--json"])
    first = json.loads(result.stdout)["stable_diffusion"][0]
    assert first["found"] is True and first["status"] == "found", first


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).stdout.startswith("diffris ")
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "info" in result.stdout


def _hf_folder(path: Path, config: dict, *files: str) -> Path:
    """A Hugging Face folder: ``config.json`` and (unread) files of those names."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    for name in files:
        (path / name).write_bytes(b"x")
    return path


def test_info_reports_the_rsrefseg_folders_each_preset_would_use(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("DIFFRIS_HOME", str(home))
    monkeypatch.delenv("DIFFRIS_SAM", raising=False)
    siglip = _hf_folder(
        tmp_path / "siglip",
        {
            "model_type": "siglip",
            "text_config": {"hidden_size": 8},
            "vision_config": {"hidden_size": 8},
        },
        "model.safetensors",
        "spiece.model",
    )
    monkeypatch.setenv("DIFFRIS_SIGLIP", str(siglip))
    large = {"model_type": "sam", "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24}}
    _hf_folder(home / "sam-vit-base", large, "model.safetensors")  # ViT-L where ViT-B belongs
    _hf_folder(home / "sam-vit-large", large, "pytorch_model.bin")

    report = json.loads(runner.invoke(app, ["info", "--json"]).stdout)["rsrefseg"]
    assert list(report) == ["siglip", "sam-b", "sam-l"]
    assert report["siglip"]["presets"] == ["rsrefseg-b", "rsrefseg-l"]
    assert report["siglip"]["uses"] == str(siglip)
    assert [(f["source"], f["found"]) for f in report["siglip"]["folders"]] == [
        ("$DIFFRIS_SIGLIP", True),
        ("cache", False),
    ]
    (base,) = report["sam-b"]["folders"]
    assert base["path"] == str(home / "sam-vit-base") and report["sam-b"]["uses"] is None
    assert base["status"] == "it holds SAM ViT-L, not the ViT-B needed here"
    assert report["sam-l"]["folders"][0]["status"] == (
        "only pickled weights (pytorch_model.bin), no model.safetensors"
    )
    table = runner.invoke(app, ["info"], env={"COLUMNS": "400"}).stdout
    (row,) = [line for line in table.splitlines() if str(siglip) in line]
    assert "SigLIP so400m-patch14-384 (rsrefseg-b, rsrefseg-l)" in row and "found" in row
    assert "'diffris weights download sam-b', 'diffris weights download sam-l'" in table

    (home / "sam-vit-large" / "pytorch_model.bin").rename(
        home / "sam-vit-large" / "model.safetensors"
    )
    report = json.loads(runner.invoke(app, ["info", "--json"]).stdout)["rsrefseg"]
    assert report["sam-l"]["uses"] == str(home / "sam-vit-large")


def test_info_lists_every_preset_of_both_architectures(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRIS_HOME", str(tmp_path / "home"))
    for variable in ("DIFFRIS_SD15", "DIFFRIS_SIGLIP", "DIFFRIS_SAM"):
        monkeypatch.delenv(variable, raising=False)
    models = json.loads(runner.invoke(app, ["info", "--json"]).stdout)["models"]
    by_preset = {entry["preset"]: entry for entry in models}
    assert list(by_preset) == list(PRESETS)
    assert {p: e["architecture"] for p, e in by_preset.items()} == {
        "tiny": "diffris",
        "sd15": "diffris",
        "rsrefseg-tiny": "rsrefseg",
        "rsrefseg-b": "rsrefseg",
        "rsrefseg-l": "rsrefseg",
    }
    for demo in ("tiny", "rsrefseg-tiny"):  # random weights: nothing to find, always ready
        assert by_preset[demo] | {"preset": None} == {
            "preset": None,
            "architecture": by_preset[demo]["architecture"],
            "demo": True,
            "needs": [],
            "ready": True,
        }
    assert by_preset["rsrefseg-b"]["needs"] == ["siglip", "sam-b"]
    assert by_preset["sd15"]["needs"] == ["sd15"]
    assert not any(by_preset[p]["ready"] for p in ("sd15", "rsrefseg-b", "rsrefseg-l"))
    table = runner.invoke(app, ["info"], env={"COLUMNS": "200"}).stdout
    (row,) = [line for line in table.splitlines() if "rsrefseg-l " in line and "sam-l" in line]
    assert "rsrefseg" in row and "weights missing" in row
