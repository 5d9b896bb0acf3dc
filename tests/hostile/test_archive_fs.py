"""Hostile file-system entries around ``diffris archive``: planted links, wrong kinds of entries,
loops, pipes and devices. Each refused case is one clear line, a non-zero exit, and nothing of
the user's changed (a link's target above all)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from diffris.archive.lock import LOCK_NAME
from diffris.archive.split import PARTS_DIR
from tests.archive.archive_helpers import tiny_archive_args, write_scene
from tests.hostile.harness import assert_one_clear_line, assert_unchanged, run_cli, snapshot

LEDGER = "diffris-ledger.sqlite"
IMPORTANT = b"my thesis, do not lose\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A source folder with one scene, a prompt file, and a file of the user's to protect."""
    write_scene(tmp_path / "in" / "a.tif", seed=1)
    (tmp_path / "prompts.yaml").write_text("- id: roofs\n  text: the red roofs\n")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "important.txt").write_bytes(IMPORTANT)
    (tmp_path / "home" / "empty.db").write_bytes(b"")
    (tmp_path / "out").mkdir()
    return tmp_path


def _archive(site: Path, source: Path | str | None = None, out: Path | None = None):
    source = source if source is not None else site / "in"
    return run_cli(tiny_archive_args(source, site / "prompts.yaml", out or site / "out"))


def _link(target: str) -> Callable[[Path, str], None]:
    def plant(site: Path, name: str) -> None:
        (site / "out" / name).symlink_to(site / "home" / target)

    return plant


def _folder(site: Path, name: str) -> None:
    (site / "out" / name).mkdir()


def _fifo(site: Path, name: str) -> None:
    os.mkfifo(site / "out" / name)


def _hard_link(site: Path, name: str) -> None:
    os.link(site / "home" / "important.txt", site / "out" / name)


def _text(site: Path, name: str) -> None:
    (site / "out" / name).write_text("")


# (what is planted at which name, the fragment the one line must contain)
PLANTED = {
    "lock-symlink-to-users-file": (LOCK_NAME, _link("important.txt"), "symbolic link"),
    "lock-dangling-symlink": (LOCK_NAME, _link("missing.txt"), "symbolic link"),
    "lock-is-a-folder": (LOCK_NAME, _folder, "is a folder"),
    "lock-is-a-fifo": (LOCK_NAME, _fifo, "named pipe"),
    "lock-hard-linked-to-users-file": (LOCK_NAME, _hard_link, "hard links"),
    "ledger-symlink-to-empty-file": (LEDGER, _link("empty.db"), "symbolic link"),
    "ledger-symlink-to-text-file": (LEDGER, _link("important.txt"), "symbolic link"),
    "ledger-is-a-folder": (LEDGER, _folder, "is a folder"),
    "ledger-wal-symlink": (LEDGER + "-wal", _link("important.txt"), "symbolic link"),
    "ledger-journal-is-a-fifo": (LEDGER + "-journal", _fifo, "named pipe"),
    "parts-folder-symlink-to-users-folder": (PARTS_DIR, _link(""), "symbolic link"),
    "parts-folder-is-a-file": (PARTS_DIR, _text, "regular file, not the split-parts folder"),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_planted_fixed_name_is_refused_and_nothing_is_written_through_it(site, case):
    name, plant, fragment = PLANTED[case]
    plant(site, name)
    before = snapshot(site / "home", site / "in")
    result = _archive(site)
    assert_one_clear_line(result, name, fragment)
    assert_unchanged(before, site / "home", site / "in")
    assert (site / "home" / "important.txt").read_bytes() == IMPORTANT
    assert sorted(os.listdir(site / "home")) == ["empty.db", "important.txt"]
    assert not list((site / "out").glob("*.tif"))  # nothing ran


def test_archive_status_refuses_a_ledger_that_is_a_symlink(site):
    (site / "out" / LEDGER).symlink_to(site / "home" / "empty.db")
    result = run_cli(["archive", "status", "-o", site / "out"])
    assert_one_clear_line(result, LEDGER, "symbolic link")
    assert (site / "home" / "empty.db").read_bytes() == b""


def _list(site: Path, line: str) -> Path:
    listing = site / "scenes.txt"
    listing.write_text(f"in/a.tif\n{line}\n")
    return listing


SOURCES = {
    "source-is-a-fifo": (lambda site: _mkfifo(site / "scenes.txt"), "named pipe"),
    "list-line-with-nul": (lambda site: _list(site, "in/b\x00.tif"), "line 2: contains a NUL"),
    "list-line-of-1-mb": (lambda site: _list(site, "x" * 1_000_000), "line 2: is 1000000 char"),
    "list-names-dev-zero": (lambda site: _list(site, "/dev/zero"), "character device"),
    "list-names-a-fifo": (
        lambda site: (_mkfifo(site / "in" / "pipe.tif"), _list(site, "in/pipe.tif"))[1],
        "named pipe",
    ),
    "output-folder-is-a-file": (None, "is a file, not a folder"),
}


def _mkfifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("case", sorted(SOURCES))
def test_a_hostile_source_or_output_is_one_clear_line(site, case):
    make, fragment = SOURCES[case]
    out = None
    if make is None:  # the output folder is a file of the user's
        out = site / "home" / "important.txt"
        source = site / "in"
    else:
        source = make(site)
    before = snapshot(site / "home", site / "in")
    result = _archive(site, source, out)
    line = assert_one_clear_line(result, fragment)
    assert "x" * 300 not in line
    assert_unchanged(before, site / "home", site / "in")
    assert not list((site / "out").glob("*.tif"))


@pytest.mark.parametrize("name", ["metrics.jsonl", "config.yaml", "best", "state"])
def test_a_link_planted_in_a_training_run_folder_is_refused(tmp_path, name):
    from diffris.errors import OutputExistsError
    from diffris.train.run_folder import check_run_folder

    victim = tmp_path / "important.txt"
    victim.write_bytes(IMPORTANT)
    run = tmp_path / "run"
    run.mkdir()
    if name != "config.yaml":
        (run / "config.yaml").write_text("config: {}\n")
    (run / name).symlink_to(victim)
    with pytest.raises(OutputExistsError, match=f"{name} is a symbolic link"):
        check_run_folder(run, resume=True, overwrite=False)
    assert victim.read_bytes() == IMPORTANT
