"""Hostile run folders and flags for ``diffris train``: one clear line, nothing of the user's lost.

One real run folder (the tiny preset, one optimiser step) is made per module; each case copies
it, damages the copy, and checks that ``train`` refuses before changing any file in it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from diffris.train import train
from tests.hostile.harness import assert_one_clear_line, assert_unchanged, run_cli, snapshot
from tests.train.helpers import quick_launch, small_config, write_small_dataset

FLAGS = ["--dataset", "synthetic", "--preset", "tiny", "--batch-size", "4", "--device-batch", "2"]
FLAGS += ["--image-size", "128", "--workers", "0", "--threads", "1"]
#: 352 bytes of anchors and aliases that expand to 9**9 strings if anything walks them.
YAML_BOMB = "config:\n  a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_dataset(tmp_path_factory.mktemp("hostile-train") / "data")


@pytest.fixture(scope="module")
def saved_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with config.yaml, metrics.jsonl and a state after one step."""
    run = tmp_path_factory.mktemp("hostile-train-run") / "run"
    threads = torch.get_num_threads()
    try:
        train(small_config(data), run, launch=quick_launch(max_steps=1))
    finally:
        torch.set_num_threads(threads)
    return run


def _state(run: Path) -> dict[str, object]:
    return json.loads((run / "state" / "state.json").read_text())


def _edit_state(**changes: object) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        state = {**_state(run), **changes}
        (run / "state" / "state.json").write_text(json.dumps(state))

    return edit


def _write_state(text: str) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        (run / "state" / "state.json").write_text(text)

    return edit


def _truncate_tensors(run: Path) -> None:
    tensors = run / "state" / str(_state(run)["tensors"])
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])


def _metrics_is_a_folder(run: Path) -> None:
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    (run / "metrics.jsonl" / "notes.txt").write_text("mine")


def _metrics_links_to_a_user_file(run: Path) -> None:
    precious = run.parent / "precious.txt"
    precious.write_text("the user's thesis\n" * 100)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(precious)


def _last_links_to_a_user_folder(run: Path) -> None:
    mine = run.parent / "my-model"
    mine.mkdir()
    (mine / "model.safetensors").write_bytes(b"my weights")
    (run / "last").symlink_to(mine, target_is_directory=True)


def _write_config(text: str | bytes) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (run / "config.yaml").write_bytes(data)

    return edit


def _edit_config(section: str, **changes: object) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        import yaml

        document = yaml.safe_load((run / "config.yaml").read_text())
        document[section].update(changes)
        (run / "config.yaml").write_text(yaml.safe_dump(document))

    return edit


def _remove_data(run: Path) -> None:
    import yaml

    document = yaml.safe_load((run / "config.yaml").read_text())
    document["config"]["data_root"] = str(run.parent / "moved-away")
    (run / "config.yaml").write_text(yaml.safe_dump(document))


#: (id, damage done to a copy of the run folder, extra flags, fragments of the error line)
RESUME_CASES = [
    ("config-garbage-bytes", _write_config(os.urandom(512)), [], ["config.yaml", "not a train"]),
    ("config-yaml-bomb", _write_config(YAML_BOMB), [], ["config.yaml", "aliases"]),
    ("config-not-a-mapping", _write_config("- just\n- a list\n"), [], ["no 'config:' mapping"]),
    (
        "config-wrong-type",
        _edit_config("config", epochs="ten"),
        [],
        ["epochs must be an integer, got 'ten'"],
    ),
    ("launch-wrong-value", _edit_config("launch", threads=-3), [], ["--threads -3 must be"]),
    ("state-epoch-negative", _edit_state(epoch=-1), [], ["epoch -1 is out of range"]),
    ("state-huge-step", _edit_state(global_step=10**12), [], ["global step 1000000000000"]),
    ("state-not-an-object", _write_state("[]"), [], ["not a JSON object"]),
    ("state-missing-rng", _edit_state(rng=None), [], ["'rng' is missing"]),
    ("state-path-escape", _edit_state(tensors="../../etc/passwd"), [], ["not a file of state/"]),
    ("state-tensors-truncated", _truncate_tensors, [], ["does not match its SHA-256"]),
    ("metrics-is-a-folder", _metrics_is_a_folder, [], ["metrics.jsonl is not a regular file"]),
    ("metrics-symlink", _metrics_links_to_a_user_file, [], ["metrics.jsonl is a symbolic link"]),
    ("last-symlink", _last_links_to_a_user_folder, [], ["last is a symbolic link"]),
    ("other-dataset", lambda run: None, ["--data-root", "{other}"], ["--data-root", "(saved:"]),
    ("saved-data-gone", _remove_data, [], ["moved-away"]),
]


@pytest.mark.parametrize(
    ("damage", "extra", "expected"),
    [case[1:] for case in RESUME_CASES],
    ids=[case[0] for case in RESUME_CASES],
)
def test_resume_of_a_damaged_run_folder_is_one_clear_line(
    saved_run: Path,
    data: Path,
    tmp_path: Path,
    damage: Callable[[Path], None],
    extra: list[str],
    expected: list[str],
) -> None:
    run = tmp_path / "run"
    shutil.copytree(saved_run, run, symlinks=True)
    damage(run)
    before = snapshot(tmp_path)
    other = tmp_path / "other-data"
    args = [a.format(other=other) for a in extra]
    if "{other}" in extra:
        shutil.copytree(data, other)
    result = run_cli(["train", "--resume", run, *args])
    assert_one_clear_line(result, *expected)
    assert_unchanged(before, tmp_path)


def test_resume_of_a_folder_that_is_not_a_run_is_one_clear_line(tmp_path: Path) -> None:
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    before = snapshot(tmp_path)
    result = run_cli(["train", "--resume", mine])
    assert_one_clear_line(result, "not a diffris run folder", "no config.yaml")
    assert_unchanged(before, tmp_path)


def test_resume_of_a_file_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    result = run_cli(["train", "--resume", tmp_path / "notes.txt"])
    assert_one_clear_line(result, "notes.txt", "is not a folder")
    assert_unchanged(before, tmp_path)


NEW_RUN_CASES = [
    ("output-is-a-file", ["-o", "{file}"], ["is a file, not a folder"]),
    ("output-under-a-file", ["-o", "{file}/run"], ["cannot create the run folder"]),
    ("output-is-a-user-folder", ["-o", "{folder}"], ["is not a diffris run folder"]),
    ("epochs-0", ["-o", "{new}", "--epochs", "0"], ["--epochs 0 must be ≥ 1"]),
    ("lr-negative", ["-o", "{new}", "--lr", "-1"], ["--lr -1.0 must be a positive number"]),
    ("batch-size-0", ["-o", "{new}", "--batch-size", "0"], ["--batch-size 0 must be ≥ 1"]),
    ("procs-0", ["-o", "{new}", "--procs", "0"], ["--procs 0"]),
    ("threads-0", ["-o", "{new}", "--threads", "0"], ["--threads 0 must be ≥ 1"]),
    ("resume-and-overwrite", ["--resume", "{folder}", "--overwrite"], ["contradict"]),
]
if not torch.cuda.is_available():
    NEW_RUN_CASES.append(("gpus-without-cuda", ["-o", "{new}", "--gpus", "1"], ["0 CUDA device"]))


@pytest.mark.parametrize(
    ("args", "expected"),
    [case[1:] for case in NEW_RUN_CASES],
    ids=[case[0] for case in NEW_RUN_CASES],
)
def test_bad_new_run_is_one_clear_line_and_creates_nothing(
    data: Path, tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    places = {"file": tmp_path / "notes.txt", "folder": tmp_path / "mine", "new": tmp_path / "new"}
    places["file"].write_text("mine")
    places["folder"].mkdir()
    (places["folder"] / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    result = run_cli(["train", *FLAGS, "--data-root", data, *(a.format(**places) for a in args)])
    assert_one_clear_line(result, *expected)
    assert_unchanged(before, tmp_path)
    assert not places["new"].exists()
