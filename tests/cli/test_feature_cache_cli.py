"""``--feature-cache`` on ``segment`` and ``archive``: the flags, their errors, a rerun."""

import json

import pytest
import rasterio
from typer.testing import CliRunner

from diffris_cli.app import app
from tests.inference.scenes import position_scene

runner = CliRunner()


def _segment(scene, out, *extra: str):
    args = [
        "segment",
        str(scene),
        "-o",
        str(out),
        "--model",
        "tiny",
        "--tile",
        "64",
        "--overlap",
        "16",
        "-q",
    ]
    return runner.invoke(app, [*args, *extra])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--feature-cache-size", "1G"], "--feature-cache-size applies to a feature cache"),
        (["--feature-cache", "{f}", "--feature-cache-size", "lots"], "is not a size"),
        (["--feature-cache", "{f}", "--feature-cache-dtype", "int8"], "not one of: float16"),
        (["--feature-cache", "{scene}"], "is a file; give a folder"),
    ],
)
def test_bad_cache_flags_fail_in_one_line_before_the_model_loads(tmp_path, flags, message):
    scene = position_scene(tmp_path / "scene.tif", 64, 64)
    flags = [f.format(f=tmp_path / "f", scene=scene) for f in flags]
    result = _segment(scene, tmp_path / "o.tif", "-t", "roofs", *flags)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.output
    assert not (tmp_path / "o.tif").exists()


def test_segment_then_archive_with_new_prompts_reuse_one_cache(tmp_path):
    (tmp_path / "in").mkdir()
    scene = position_scene(tmp_path / "in" / "scene.tif", 150, 100)
    cache = tmp_path / "features"
    first = _segment(scene, tmp_path / "a.tif", "-t", "roofs", "--feature-cache", str(cache))
    assert first.exit_code == 0, first.output
    (entry,) = (cache / "entries").iterdir()
    markers = {p: p.stat().st_mtime_ns for p in (entry / "tiles").iterdir()}
    prompts = tmp_path / "new.yaml"
    prompts.write_text(json.dumps([{"id": "ponds", "text": "the ponds"}]))
    args = ["archive", str(tmp_path / "in"), "--prompts", str(prompts), "-o", str(tmp_path / "o")]
    args += [
        "--model",
        "tiny",
        "--tile",
        "64",
        "--overlap",
        "16",
        "--feature-cache",
        str(cache),
        "-q",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in (entry / "tiles").iterdir()} == markers
    with rasterio.open(tmp_path / "o" / "scene.tif") as written:
        assert written.count == 1 and written.descriptions == ("the ponds",)
