"""Hostile values in what users hand diffris to parse: description files, flags, configs, model
folders and annotation files. Each gives one clear line, a non-zero exit, nothing changed."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.hostile.harness import (
    MAX_LINE,
    assert_one_clear_line,
    assert_unchanged,
    run_cli,
    snapshot,
)
from tests.inference.scenes import position_scene

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "examples" / "models" / "demo"
RRSISD = REPO / "tests" / "data" / "rrsisd"


def alias_bomb(levels: int = 7) -> str:
    """A few hundred bytes of YAML whose threshold expands to 9**levels strings."""
    lines = [
        "- text: roads",
        "  threshold:",
        '    - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    previous = "a"
    for name in "bcdefghij"[: levels - 1]:
        lines.append(f"    - &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


#: name -> (file name, content, fragments of the one error line).
PROMPT_FILES: dict[str, tuple[str, str | bytes, tuple[str, ...]]] = {
    "yaml alias bomb": ("p.yaml", alias_bomb(), ("line 3", "anchors and aliases")),
    "yaml anchor": ("p.yaml", "- &x roads\n", ("line 1", "anchors and aliases")),
    "json nested 100000 deep": ("p.json", "[" * 100_000, ("line 1", "nested more than 32")),
    "yaml nested 100000 deep": ("p.yaml", "[" * 100_000, ("line 1", "nested more than 32")),
    "text is a list": (
        "p.yaml",
        "- id: a\n  text: [roads, lakes]\n",
        ("text of prompt 1 is a list",),
    ),
    "text is a mapping": ("p.json", '[{"text": {"en": "roads"}}]', ("text of prompt 1 is a dict",)),
    "binary garbage": ("p.txt", bytes(range(256)) * 4, ("line 2", "not UTF-8")),
    "binary that is valid UTF-8": (
        "p.txt",
        bytes(range(1, 128)) * 4,
        ("line 1", "control character"),
    ),
    "utf-16 with bom": ("p.yaml", "- roads\n".encode("utf-16"), ("is UTF-16", "UTF-8")),
    "50 MB single line": (
        "p.txt",
        "a" * (50 << 20),
        ("52428800 bytes, more than the 1048576 allowed",),
    ),
    "duplicate ids": (
        "p.yaml",
        "- {id: r, text: a}\n- {id: r, text: b}\n",
        ("line 2", "duplicate id 'r'"),
    ),
    "id with a slash": (
        "p.json",
        '[{"id": "../etc", "text": "roads"}]',
        ("'../etc'", "not a short name"),
    ),
    "id with a newline": (
        "p.json",
        '[{"id": "roads\\n", "text": "x"}]',
        ("'roads\\n'", "not a short name"),
    ),
    "id that looks like console markup": (
        "p.yaml",
        "- {id: '[red]roads', text: x}\n",
        ("id '[red]roads' of prompt 1",),
    ),
    "threshold NaN": ("p.yaml", "- text: roads\n  threshold: .nan\n", ("threshold nan", "(0, 1)")),
    "threshold inf": (
        "p.json",
        '[{"text": "roads", "threshold": Infinity}]',
        ("threshold inf", "(0, 1)"),
    ),
    "threshold 'NaN' string": (
        "p.yaml",
        "- text: roads\n  threshold: 'NaN'\n",
        ("threshold 'NaN'",),
    ),
    "100k-character text": ("p.txt", "a" * 100_000 + "\n", ("100000 characters", "shorten it")),
    "NUL byte in a text": ("p.txt", "roads\x00 and lakes\n", ("control character '\\x00'",)),
    "empty file": ("p.yaml", "", ("no prompts",)),
    "yaml scalar": ("p.yaml", "roads\n", ("expected a list of prompts",)),
    "yaml mapping without prompts": ("p.yaml", "roads: 1\n", ("exactly one key 'prompts'",)),
    "json duplicate keys": (
        "p.json",
        '[{"text": "roads", "text": "lakes"}]',
        ("line 1", "duplicate key 'text'"),
    ),
    "yaml duplicate keys": (
        "p.yaml",
        "- text: roads\n  text: lakes\n",
        ("line 2", "duplicate key 'text'"),
    ),
    "unknown key of 100k characters": (
        "p.json",
        json.dumps([{"k" * 100_000: 1, "text": "r"}]),
        ("unknown key",),
    ),
}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scene")
    position_scene(folder / "scene.tif", 128, 128)
    return folder


def segment(scene_dir: Path, out: Path, *extra: object):  # type: ignore[no-untyped-def]
    return run_cli(["segment", scene_dir / "scene.tif", "-o", out, "--model", "tiny", *extra])


@pytest.mark.parametrize("case", list(PROMPT_FILES), ids=list(PROMPT_FILES))
def test_a_hostile_description_file_is_one_clear_line(tmp_path, scene_dir, case):
    name, content, expected = PROMPT_FILES[case]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    before = snapshot(tmp_path, scene_dir)
    result = segment(scene_dir, tmp_path / "out.tif", "--prompts", path)
    line = assert_one_clear_line(result, str(path), *expected, code=1)
    assert len(line) <= MAX_LINE
    assert_unchanged(before, tmp_path, scene_dir)
    assert not (tmp_path / "out.tif").exists()


FLAGS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "tile 1048576": (["--tile", "1048576"], ("--tile 1048576 is more than 8192",)),
    "tile -512": (["--tile", "-512"], ("--tile -512 must be positive",)),
    "tile 0": (["--tile", "0"], ("--tile 0 must be positive",)),
    "bands 0": (["--bands", "0"], ("has no band 0",)),
    "bands 99": (["--bands", "99"], ("has no band 99",)),
    "overlap equal to tile": (
        ["--tile", "256", "--overlap", "256"],
        ("more than half of --tile 256",),
    ),
    "stretch 5,1": (["--stretch", "5,1"], ("--stretch 5,1 is not a range",)),
    "stretch nan,1": (["--stretch", "nan,1"], ("is not a range",)),
    "threshold nan": (["--threshold", "nan"], ("--threshold nan is not in (0, 1)",)),
    "text of 100k characters": (["-t", "a" * 100_000], ("100000 characters",)),
    "text with a control character": (["-t", "roads\x07"], ("control character '\\x07'",)),
}


@pytest.mark.parametrize("case", list(FLAGS), ids=list(FLAGS))
def test_a_hostile_flag_value_is_one_clear_line(tmp_path, scene_dir, case):
    flags, expected = FLAGS[case]
    before = snapshot(scene_dir)
    text = [] if "-t" in flags else ["-t", "roads"]
    result = segment(scene_dir, tmp_path / "out.tif", *text, *flags)
    assert_one_clear_line(result, *expected, code=1)
    assert_unchanged(before, scene_dir)
    assert not (tmp_path / "out.tif").exists()


#: name -> (the --config YAML, fragments of the error line).
TRAIN_CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dim sixty-four": (
        "pcmrd:\n  dim: sixty-four\n",
        ("pcmrd.dim must be an integer", "'sixty-four' (a str)"),
    ),
    "dim 10000000": ("pcmrd:\n  dim: 10000000\n", ("PCMRD dim=10000000", "no larger than 4096")),
    "heads true": (
        "cp_adapter:\n  heads: true\n",
        ("cp_adapter.heads must be an integer", "True (a bool)"),
    ),
    "epochs a list": ("epochs: [1, 2]\n", ("epochs must be an integer", "(a list)")),
    "lr a string": ("lr: fast\n", ("lr must be a number", "'fast'")),
    "cache_latents 1": ("cache_latents: 1\n", ("cache_latents must be true or false",)),
    "betas of three": ("betas: [0.9, 0.99, 0.999]\n", ("betas must be a list of 2 values",)),
    "pcmrd a list": ("pcmrd: [256]\n", ("pcmrd must be a mapping of options",)),
    "image_size 5120000": ("image_size: 5120000\n", ("--image-size 5120000 is more than 8192",)),
    "alias bomb": ("a: &a [1, 1]\nb: [*a, *a]\n", ("line 1", "anchors and aliases")),
    "nested 100000 deep": ("[" * 100_000, ("nested more than 32",)),
    "duplicate key": ("epochs: 3\nepochs: 4\n", ("line 2", "duplicate key 'epochs'")),
    "a list": ("- epochs: 3\n", ("must hold a mapping",)),
}


@pytest.mark.parametrize("case", list(TRAIN_CONFIGS), ids=list(TRAIN_CONFIGS))
def test_a_hostile_training_config_is_one_clear_line(tmp_path, case):
    text, expected = TRAIN_CONFIGS[case]
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    before = snapshot(tmp_path)
    run = tmp_path / "run"
    result = run_cli(
        ["train", "--config", config, "--dataset", "synthetic", "--data-root", tmp_path, "-o", run]
    )
    assert_one_clear_line(result, *expected, code=1)
    assert_unchanged(before, tmp_path)
    assert not run.exists()


def _model_config(change: Callable[[dict], object]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        document = json.loads(text)
        result = change(document)
        return json.dumps(document if result is None else result)

    return edit


#: name -> (how config.json of the demo model is changed, fragments of the error line).
MODEL_CONFIGS: dict[str, tuple[Callable[[str], str], tuple[str, ...]]] = {
    "config.json a list": (lambda text: "[1, 2, 3]", ("holds a JSON list",)),
    "config.json nested 100000 deep": (
        lambda text: "[" * 100_000 + "]" * 100_000,
        ("nested too deeply",),
    ),
    "dim sixty-four": (
        _model_config(lambda d: d["model"]["pcmrd"].update(dim="sixty-four")),
        ("pcmrd.dim must be an integer",),
    ),
    "dim 10000000": (
        _model_config(lambda d: d["model"]["pcmrd"].update(dim=10_000_000)),
        ("PCMRD dim=10000000", "no larger than 4096"),
    ),
    "max_tokens 1e9": (
        _model_config(lambda d: d["model"].update(max_tokens=10**9)),
        ("max_tokens=1000000000",),
    ),
    "architecture of 1 MB": (
        _model_config(lambda d: d.update(architecture="x" * (1 << 20))),
        ("names architecture 'xxxx",),
    ),
}


@pytest.mark.parametrize("case", list(MODEL_CONFIGS), ids=list(MODEL_CONFIGS))
def test_a_hostile_trained_model_config_is_one_clear_line(tmp_path, scene_dir, case):
    change, expected = MODEL_CONFIGS[case]
    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, model)
    config = model / "config.json"
    config.write_text(change(config.read_text()))
    before = snapshot(tmp_path, scene_dir)
    out = tmp_path / "out.tif"
    result = run_cli(
        ["segment", scene_dir / "scene.tif", "-t", "roads", "-o", out, "--model", model]
    )
    assert_one_clear_line(result, str(config), *expected, code=1)
    assert_unchanged(before, tmp_path, scene_dir)
    assert not out.exists()


#: name -> (the segmentation of every annotation, fragments of the error line). Sized so that
#: without the checks they would decode (tens of MB), not exhaust the machine running the tests.
SEGMENTATIONS: dict[str, tuple[object, tuple[str, ...]]] = {
    "polygon with a negative vertex": (
        [[0, 0, -1e5, 5, 5, 5]],
        ("vertex (-100000, 5) lies outside",),
    ),
    "polygon of 20000 vertices": ([[0, 0, 63, 63] * 10_000], ("outline of", "more than a 64x64")),
    "RLE size 1e9 x 1e9": (
        [{"size": [10**9, 10**9], "counts": "0"}],
        ("RLE size [1000000000, 1000000000]",),
    ),
    "RLE size of NaN": ([{"size": [float("nan"), 64], "counts": "0"}], ("RLE size [nan, 64]",)),
    "RLE size of strings": ([{"size": ["a", "b"], "counts": "0"}], ("RLE size ['a', 'b']",)),
    "RLE of 10001 runs": ([{"size": [64, 64], "counts": [0] * 10_000 + [4096]}], ("10001 runs",)),
    "5000 parts": ([[0, 0, 5, 0, 5, 5]] * 5000, ("5000 parts",)),
}


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Empty predicted masks for the two test-split samples of the RRSIS-D fixture."""
    folder = tmp_path_factory.mktemp("predictions")
    for sample_id in ("5_6", "6_7"):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / f"{sample_id}.png")
    return folder


def hostile_rrsisd(tmp_path: Path, segmentation: object) -> tuple[Path, list[str]]:
    """A copy of the RRSIS-D fixture whose every annotation has ``segmentation``, and the
    ``evaluate`` arguments that score it; returns (instances.json, arguments)."""
    root = tmp_path / "RRSIS-D"
    shutil.copytree(RRSISD, root)
    instances = root / "rrsisd" / "instances.json"
    document = json.loads(instances.read_text())
    for annotation in document["annotations"]:
        annotation["segmentation"] = segmentation
    instances.write_text(json.dumps(document))
    return instances, ["evaluate", "-d", "rrsisd", "--data-root", str(root), "--split", "test"]


@pytest.mark.parametrize("case", list(SEGMENTATIONS), ids=list(SEGMENTATIONS))
def test_a_hostile_rrsisd_segmentation_is_one_clear_line(tmp_path, predictions, case):
    segmentation, expected = SEGMENTATIONS[case]
    instances, args = hostile_rrsisd(tmp_path, segmentation)
    before = snapshot(tmp_path, predictions)
    result = run_cli([*args, "--predictions", predictions])
    assert_one_clear_line(result, str(instances), *expected, code=1)
    assert_unchanged(before, tmp_path, predictions)


def _cap_memory() -> None:
    """3 GiB of address space for the child: without the check, pycocotools asked for ~20 GB
    (and, under this cap, crashed with SIGSEGV); a refusal needs a fraction of it."""
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


#: Polygons that made pycocotools crash the process (SIGSEGV): tested in a child process.
CRASHERS = {
    "polygon at 1e12": ([0, 0, 1e12, 0, 1e12, 1e12], "vertex (1e+12, 0) lies outside the 64x64"),
    "polygon with a NaN vertex": ([0, 0, float("nan"), 5, 5, 5], "vertex (nan, 5) lies outside"),
}


@pytest.mark.parametrize("case", list(CRASHERS), ids=list(CRASHERS))
def test_a_polygon_far_outside_is_refused_before_pycocotools_allocates(tmp_path, predictions, case):
    polygon, expected = CRASHERS[case]
    instances, args = hostile_rrsisd(tmp_path, [polygon])
    before = snapshot(tmp_path, predictions)
    command = [sys.executable, "-m", "diffris_cli", "-q", *args, "--predictions", str(predictions)]
    result = subprocess.run(
        command, capture_output=True, text=True, preexec_fn=_cap_memory, timeout=120, check=False
    )
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr[-2000:]
    assert f"{instances} annotation 105" in lines[0]
    assert expected in lines[0], lines[0]
    assert_unchanged(before, tmp_path, predictions)


def _huge_png(path: Path, side: int) -> None:
    """A bilevel PNG of a few kB whose header claims ``side`` x ``side`` px."""
    Image.new("1", (side, side)).save(path, format="PNG")


def _huge_tiff(path: Path, side: int) -> None:
    """A sparse tiled TIFF of a few kB whose header claims ``side`` x ``side`` RGB px."""
    import rasterio

    profile = {"driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8"}
    with rasterio.open(path, "w", tiled=True, compress="deflate", SPARSE_OK=True, **profile):
        pass


@pytest.mark.parametrize(
    ("side", "expected"),
    [(10_000, "claims 10000x10000 px, more than the 67108864"), (20_000, "decompression bomb")],
)
def test_a_benchmark_image_claiming_a_huge_size_is_refused_before_decoding(
    tmp_path, predictions, side, expected
):
    instances, args = hostile_rrsisd(tmp_path, [[10, 10, 40, 10, 40, 30]])
    image = instances.parent.parent / "images" / "rrsisd" / "JPEGImages" / "00005.jpg"
    _huge_png(image, side)
    before = snapshot(tmp_path, predictions)
    result = run_cli([*args, "--predictions", predictions])
    assert_one_clear_line(result, str(image), expected, code=1)
    assert_unchanged(before, tmp_path, predictions)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_benchmark_tiff_claiming_a_huge_size_is_refused_before_reading(tmp_path):
    root = tmp_path / "RefSegRS"
    shutil.copytree(REPO / "tests" / "data" / "refsegrs", root)
    image = root / "images" / "42.tif"
    _huge_tiff(image, 10_000)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for sample_id in ("42", "1000"):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(predictions / f"{sample_id}.png")
    before = snapshot(tmp_path)
    args = ["evaluate", "-d", "refsegrs", "--data-root", root, "--split", "test"]
    result = run_cli([*args, "--predictions", predictions])
    assert_one_clear_line(result, str(image), "claims 10000x10000 px", code=1)
    assert_unchanged(before, tmp_path)


def test_a_phrase_file_line_of_a_megabyte_is_quoted_cut(tmp_path):
    root = tmp_path / "RefSegRS"
    shutil.copytree(REPO / "tests" / "data" / "refsegrs", root)
    phrases = root / "output_phrase_test.txt"
    phrases.write_text("x" * (1 << 20) + "\n", encoding="utf-8")
    before = snapshot(tmp_path)
    args = ["evaluate", "-d", "refsegrs", "--data-root", root, "--split", "test"]
    result = run_cli([*args, "--predictions", tmp_path])
    assert_one_clear_line(result, f"{phrases} line 1: 'xxxx", "has no sentence", code=1)
    assert_unchanged(before, tmp_path)


def test_rrsisd_instances_nested_100000_deep_is_one_clear_line(tmp_path, predictions):
    instances, args = hostile_rrsisd(tmp_path, [[10, 10, 40, 10, 40, 30]])
    instances.write_text("[" * 100_000 + "]" * 100_000)
    before = snapshot(tmp_path, predictions)
    result = run_cli([*args, "--predictions", predictions])
    assert_one_clear_line(result, f"{instances} is nested too deeply", code=1)
    assert_unchanged(before, tmp_path, predictions)
