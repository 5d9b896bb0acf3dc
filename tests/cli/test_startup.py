"""``--help``, ``--version`` and preflight errors answer without importing the heavy libraries.

Behaviour, not timing (``benchmarks/cli_startup.py`` prints the wall times): each case runs the
real ``diffris`` entry point in a fresh interpreter and reports which modules it imported.
"""

import json
import subprocess
import sys

import pytest

from tests.inference.scenes import position_scene

#: Seconds each costs to import here, roughly: torch 2.4, distributed 1.2, zarr 0.7, rasterio 0.5.
MODEL_STACK = ("torch", "diffusers", "transformers", "safetensors")
ARCHIVE_STACK = ("dask", "distributed", "zarr")
RASTER_STACK = ("rasterio", "numpy", "PIL")

_PROBE = """
import json, sys
from diffris_cli.app import main
sys.argv = ["diffris", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as stop:
    code = stop.code
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}),
      file=sys.stderr)
"""


def _run(args: list[str], cwd) -> tuple[int, set[str], str]:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"]), done.stdout + done.stderr


@pytest.mark.parametrize(
    "args", [["--help"], ["segment", "--help"], ["archive", "status", "--help"], ["--version"]]
)
def test_help_and_version_import_neither_the_model_nor_the_raster_stack(tmp_path, args):
    code, modules, output = _run(args, tmp_path)
    assert code in (0, None), output
    assert not modules & {*MODEL_STACK, *ARCHIVE_STACK, *RASTER_STACK}, sorted(modules)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["missing.tif", "-o", "o.tif"], "missing.tif does not exist"),
        (["scene.tif", "-o", "o.jpg"], "cannot tell the output format"),
        (["scene.tif", "-o", "o.tif", "--threshold", "2"], "--threshold 2.0 is not in (0, 1)"),
        (["scene.tif", "-o", "o.tif", "--co", "COMPRESS=FOO"], "rejected by GDAL"),
    ],
)
def test_a_preflight_error_answers_before_the_model_stack_loads(tmp_path, extra, expected):
    position_scene(tmp_path / "scene.tif", 64, 64)
    code, modules, output = _run(["segment", "--text", "x", "--model", "tiny", *extra], tmp_path)
    assert code == 1 and expected in output, output
    assert not modules & {*MODEL_STACK, *ARCHIVE_STACK}, sorted(modules)


def test_info_answers_without_torch_and_asks_it_only_with_devices(tmp_path):
    code, modules, output = _run(["info", "--json"], tmp_path)
    assert code in (0, None), output
    assert not modules & {*MODEL_STACK, *ARCHIVE_STACK}, sorted(modules)
    assert '"devices_from": "driver"' in output
    code, modules, output = _run(["info", "--devices", "--json"], tmp_path)
    assert code in (0, None) and "torch" in modules, output
    assert '"devices_from": "torch"' in output and '"threads"' in output


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["missing/", "--model", "tiny"], "missing/ not found"),
        (["scenes/", "--model", "runs/best"], "model folder"),
        (["missing/", "--model", "tiny", "--scheduler", "local"], "missing/ not found"),
    ],
)
def test_an_archive_preflight_error_answers_before_torch_and_dask_load(tmp_path, extra, expected):
    (tmp_path / "scenes").mkdir()
    (tmp_path / "p.yaml").write_text("- {id: r, text: the roads}\n")
    args = ["archive", extra[0], "--prompts", "p.yaml", "-o", "out", *extra[1:]]
    code, modules, output = _run(args, tmp_path)
    assert code == 1 and expected in output, output
    assert not modules & {*MODEL_STACK, *ARCHIVE_STACK}, sorted(modules)
