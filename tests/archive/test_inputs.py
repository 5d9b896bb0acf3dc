"""Scene discovery: folders, globs, scene lists, URLs; output naming."""

import pytest

from diffris.archive.inputs import discover_scenes, identify
from diffris.archive.jobs import make_jobs
from diffris.errors import InputError, InputNotFoundError
from tests.archive.archive_helpers import PROMPTS, job_options


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_is_recursive_and_ignores_hidden_files_and_the_output_folder(tmp_path):
    for name in ("a.tif", "2024/06/b.TIF", "c.jp2", "notes.txt", ".hidden.tif", ".tmp/d.tif"):
        _touch(tmp_path / "in" / name)
    _touch(tmp_path / "in" / "masks" / "old.tif")
    scenes = discover_scenes(tmp_path / "in", exclude=[tmp_path / "in" / "masks"])
    assert [s.name for s in scenes] == ["2024/06/b.TIF", "a.tif", "c.jp2"]
    assert all(s.source.startswith(str(tmp_path)) for s in scenes)


def test_glob_descends_and_names_are_relative_to_its_fixed_folder(tmp_path):
    _touch(tmp_path / "data" / "x" / "a.tif")
    _touch(tmp_path / "data" / "y" / "z" / "b.tif")
    _touch(tmp_path / "data" / "y" / "c.jp2")
    scenes = discover_scenes(f"{tmp_path}/data/**/*.tif")
    assert [s.name for s in scenes] == ["x/a.tif", "y/z/b.tif"]


def test_scene_list_comments_relative_paths_urls_and_duplicates(tmp_path):
    _touch(tmp_path / "scenes" / "a.tif")
    listing = tmp_path / "scenes.txt"
    listing.write_text(
        "# nightly list\n\nscenes/a.tif\n" + f"{tmp_path}/scenes/a.tif\n"
        "/vsicurl/https://example.com/cogs/b.tif\nhttps://example.com/c.tif?sig=1\n"
        "scenes/missing.tif\n"
    )
    scenes = discover_scenes(listing)
    sources = [s.source for s in scenes]
    assert sources.count(str(tmp_path / "scenes" / "a.tif")) == 1
    assert "/vsicurl/https://example.com/cogs/b.tif" in sources
    assert "https://example.com/c.tif?sig=1" in sources
    assert str(tmp_path / "scenes" / "missing.tif") in sources  # fails later, as a scene
    remote = next(s for s in scenes if s.source.startswith("/vsicurl"))
    assert remote.remote and remote.name == "example.com/cogs/b.tif"
    assert identify(remote).fingerprint == "unstat-ed"


def test_empty_and_missing_sources_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no scenes in folder .*empty"):
        discover_scenes(tmp_path / "empty")
    with pytest.raises(InputError, match="no scenes in glob"):
        discover_scenes(f"{tmp_path}/empty/**/*.tif")
    with pytest.raises(InputNotFoundError, match="nowhere"):
        discover_scenes(tmp_path / "nowhere")
    with pytest.raises(InputError, match="neither a raster"):
        discover_scenes(_touch(tmp_path / "prompts.yaml"))


def test_outputs_mirror_names_and_never_collide(tmp_path):
    for name in ("a.tif", "a.jp2", "sub/a.tif"):
        _touch(tmp_path / "in" / name)
    jobs = make_jobs(
        discover_scenes(tmp_path / "in"),
        out_dir=tmp_path / "out",
        model="m",
        model_id="m",
        prompts=PROMPTS,
        options=job_options(),
    )
    outputs = sorted(job.output for job in jobs)
    assert outputs == [str(tmp_path / "out" / n) for n in ("a_jp2.tif", "a_tif.tif", "sub/a.tif")]
    assert len({job.key for job in jobs}) == 3


def test_content_hash_ignores_touch_but_not_edits(tmp_path):
    path = _touch(tmp_path / "a.tif")
    scene = discover_scenes(path)[0]
    first = identify(scene, hash_content=True)
    path.touch()
    path.write_bytes(b"x")  # same bytes, new mtime
    again = identify(scene, hash_content=True)
    assert again.fingerprint == first.fingerprint and again.mtime_ns != first.mtime_ns
    path.write_bytes(b"y")
    assert identify(scene, hash_content=True).fingerprint != first.fingerprint
