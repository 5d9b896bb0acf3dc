import json

from typer.testing import CliRunner

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
    assert first == {"path": str(sd), "found": False, "missing": ["tokenizer"]}
    assert report["checkpoint_cache"] == str(tmp_path / "home" / "models")
    (sd / "tokenizer").mkdir()
    result = runner.invoke(app, ["info", "--pretrained", str(sd), "--json"])
    assert json.loads(result.stdout)["stable_diffusion"][0]["found"] is True


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).stdout.startswith("diffris ")
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "info" in result.stdout
