"""Links in the archive: source walks cut loops but follow real links; temporary outputs are
never written, or restored, through a planted link."""

import os
from pathlib import Path

import pytest

from diffris.archive.inputs import discover_scenes
from diffris.geo.sinks import publish as publish_module
from diffris.geo.sinks.publish import reserve_partial
from tests.archive.archive_helpers import write_scene


def _names(source) -> list[str]:
    return [scene.name for scene in discover_scenes(source)]


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    write_scene(root / "a.tif", seed=1)
    write_scene(root / "z" / "b.tif", seed=2)
    return root


def test_a_link_back_up_the_tree_is_not_walked_again(tmp_path):
    root = _tree(tmp_path)
    (root / "a").mkdir()
    (root / "a" / "loop").symlink_to("..")  # ln -s .. in/a/loop
    (root / "a" / "up").symlink_to("../..")  # around the source folder: also a loop
    assert _names(root) == ["a.tif", "z/b.tif"]
    assert _names(f"{root}/**/*.tif") == ["a.tif", "z/b.tif"]


def test_a_link_to_a_sibling_folder_names_it_once_by_its_real_place(tmp_path):
    root = _tree(tmp_path)
    (root / "a_link").symlink_to("z")  # sorts before z
    assert _names(root) == ["a.tif", "z/b.tif"]


def test_linked_folders_and_files_outside_the_tree_are_scenes(tmp_path):
    root = _tree(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    write_scene(elsewhere / "c.tif", seed=3)
    write_scene(tmp_path / "d.tif", seed=4)
    (elsewhere / "again").symlink_to(".")  # a loop outside the tree: walked once
    (root / "ext").symlink_to(elsewhere)
    (root / "d.tif").symlink_to(tmp_path / "d.tif")
    assert _names(root) == ["a.tif", "d.tif", "ext/c.tif", "z/b.tif"]


def test_pipes_and_devices_in_a_folder_are_skipped_and_dangling_links_kept(tmp_path):
    root = _tree(tmp_path)
    os.mkfifo(root / "pipe.tif")  # GDAL's open would block on it forever
    (root / "zero.tif").symlink_to("/dev/zero")  # a --hash-content run would never end
    (root / "gone.tif").symlink_to(tmp_path / "missing.tif")  # fails as a scene, recorded
    assert _names(root) == ["a.tif", "gone.tif", "z/b.tif"]


def test_a_partial_name_planted_as_a_link_is_never_written_through(tmp_path, monkeypatch):
    victim = tmp_path / "important.txt"
    victim.write_text("mine")
    out = tmp_path / "out" / "a.tif"
    out.parent.mkdir()
    tokens = iter(["0badc0de", "600dcafe", "0000beef"])
    monkeypatch.setattr(publish_module.secrets, "token_hex", lambda _: next(tokens))
    planted = out.with_name(f".a.tif.partial-{os.getpid()}-0badc0de")
    planted.symlink_to(victim)
    partial = reserve_partial(out)
    assert partial.name.endswith("600dcafe") and partial.is_file() and not partial.is_symlink()
    assert victim.read_text() == "mine"
    folder = reserve_partial(out.with_name("b.zarr"), folder=True)
    assert folder.is_dir() and not folder.is_symlink()


def test_a_planted_old_output_link_is_removed_not_restored_as_an_output(tmp_path):
    from diffris.geo.sinks.publish import clean_stale_partials

    victim = tmp_path / "important.txt"
    victim.write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    planted = out / ".a.tif.old-999999999-0badc0de"  # no such process
    planted.symlink_to(victim)
    assert clean_stale_partials(out) == [planted]
    assert not (out / "a.tif").exists() and not (out / "a.tif").is_symlink()
    assert victim.read_text() == "mine"


def test_a_lock_that_cannot_be_written_is_released_and_closed(tmp_path, monkeypatch):
    """A failed start (here: the holder cannot be written) never keeps the folder locked."""
    from diffris.archive import lock as lock_module

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lock_module.os, "pwrite", full_disk)
    with pytest.raises(OSError, match="No space left"):
        lock_module.OutputLock(tmp_path).acquire()
    monkeypatch.undo()
    with lock_module.OutputLock(tmp_path) as lock:  # not blocked by a leaked descriptor
        assert lock.held
