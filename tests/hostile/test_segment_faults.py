"""Faults during ``diffris segment`` and its writes: signals, a full disk, corrupt scenes, bad
VRTs, a run too big for memory, and other hostile scenes and outputs.

Each bad input gives one clear line, a non-zero exit and no traceback, and leaves the user's
files as they were and nothing half-written (see :mod:`tests.hostile.harness`). Signals and
resource limits need a real process: those cases run ``python -m diffris_cli``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from diffris.archive.ledger import Ledger
from diffris.archive.runner import archive
from tests.archive.archive_helpers import PROMPTS, field_processor, job_options, write_scene
from tests.hostile.harness import assert_one_clear_line, assert_unchanged, run_cli, snapshot
from tests.inference.scenes import CRS_UTM, TRANSFORM, position_scene

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "tiny", "--tile", "128", "--overlap", "0"]


def _segment(scene: Path, out: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "diffris_cli", "-q", "segment", str(scene)]
    return [*command, "-t", "roofs", "-t", "water", "-o", str(out), *TINY, *extra]


def _env() -> dict[str, str]:
    # the subprocess imports this checkout's diffris, whatever is installed
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _partials(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".partial-" in p.name) if folder.is_dir() else []


def _start_and_wait_for_partial(command: list[str], folder: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        command, env=_env(), cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not _partials(folder):
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be stopped: {process.stderr.read()}")
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.05)
    time.sleep(0.3)  # mid-scene: tiles are being predicted and written
    return process


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --- SIGTERM and SIGKILL ------------------------------------------------------------------------


def test_sigterm_mid_run_says_one_line_exits_143_and_leaves_no_partial(tmp_path):
    big = position_scene(tmp_path / "big.tif", 1024, 1024)
    out = tmp_path / "out" / "masks.tif"
    process = _start_and_wait_for_partial(_segment(big, out), out.parent)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    (line,) = _error_lines(stderr)
    assert "terminated (SIGTERM)" in line
    assert list(out.parent.iterdir()) == []  # no output, no partial


def test_next_run_removes_the_partial_of_a_killed_run_but_never_a_live_processs(tmp_path):
    big = position_scene(tmp_path / "big.tif", 1024, 1024)
    small = position_scene(tmp_path / "small.tif", 200, 150)
    folder = tmp_path / "out"
    process = _start_and_wait_for_partial(_segment(big, folder / "big.tif"), folder)
    process.kill()  # SIGKILL: nothing of the run can clean up
    process.communicate(timeout=60)
    (stale,) = _partials(folder)
    assert f"-{process.pid}-" in stale.name
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        theirs = folder / f".other.tif.partial-{live.pid}-0123abcd"
        theirs.write_bytes(b"a live run's output in progress")
        rerun = subprocess.run(
            _segment(small, folder / "small.tif"), env=_env(), cwd=ROOT, capture_output=True
        )
        assert rerun.returncode == 0, rerun.stderr
        assert not stale.exists()
        assert theirs.read_bytes() == b"a live run's output in progress"
    finally:
        live.kill()
        live.wait()
    assert sorted(p.name for p in folder.iterdir()) == [theirs.name, "small.tif"]


# --- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("name", ["masks.tif", "masks.cog.tif", "masks.zarr"])
def test_a_full_disk_is_one_line_and_leaves_nothing_partial(tmp_path, full_disk, name):
    scene = position_scene(tmp_path / "scene.tif", 1024, 512)
    before = snapshot(tmp_path / "scene.tif")
    args = ["segment", scene, "-t", "a", "-t", "b", "-o", full_disk / name, *TINY]
    result = run_cli([*args, "--output-type", "prob", "--dtype", "float32"])
    assert_one_clear_line(
        result, f"no space left on device writing {full_disk / name}", "nothing was published"
    )
    assert list(full_disk.iterdir()) == []
    assert_unchanged(before, tmp_path / "scene.tif")


def test_a_full_disk_when_the_archive_takes_its_lock_is_one_line(tmp_path, full_disk):
    with pytest.raises(OSError, match="No space left"):  # fill the disk to its last byte
        (full_disk / "filler").write_bytes(b"\0" * 300_000)
    write_scene(tmp_path / "in" / "a.tif")
    prompts = tmp_path / "p.yaml"
    prompts.write_text("- id: roofs\n  text: red roofs\n")
    # the real entry point in a process of its own, as cron runs it
    command = [sys.executable, "-m", "diffris_cli", "-q", "archive", str(tmp_path / "in")]
    command += ["--prompts", str(prompts), "-o", str(full_disk), *TINY]
    done = subprocess.run(command, env=_env(), cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = _error_lines(done.stderr)
    assert "no space left on device" in line and "nothing was published" in line


def _limit_file_size() -> None:
    # EFBIG instead of death by SIGXFSZ: the error path, not the signal, is under test
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))


def test_a_file_size_limit_is_one_line_and_leaves_nothing_partial(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", 1024, 512)
    out = tmp_path / "out" / "masks.tif"
    command = [*_segment(scene, out), "--output-type", "prob", "--dtype", "float32"]
    done = subprocess.run(
        command, env=_env(), cwd=ROOT, capture_output=True, text=True, preexec_fn=_limit_file_size
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = _error_lines(done.stderr)
    assert f"file-size limit reached (ulimit -f, or the file system's) writing {out}" in line
    assert list(out.parent.iterdir()) == []


# --- corrupt and truncated scenes ---------------------------------------------------------------


def _truncated(path: Path, *, tiled: bool, dtype: str = "uint8") -> Path:
    """A 1024 x 1024 scene of noise cut to half its bytes (``head -c $((size/2))``)."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 250, (3, 1024, 1024)).astype(dtype)
    layout = {"tiled": True, "blockxsize": 256, "blockysize": 256} if tiled else {}
    whole = path.with_name("whole-" + path.name)
    profile = dict(driver="GTiff", width=1024, height=1024, count=3, dtype=dtype, crs=CRS_UTM)
    with rasterio.open(
        whole, "w", transform=TRANSFORM, compress="deflate", **profile, **layout
    ) as f:
        f.write(data)
    content = whole.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    whole.unlink()
    return path


@pytest.mark.parametrize(
    ("tiled", "dtype", "where"),
    [
        (True, "uint8", "window column"),
        (False, "uint8", "window column"),
        (True, "uint16", "statistics sample"),  # the stretch's read, before any tile
    ],
)
def test_a_truncated_scene_is_one_line_naming_the_file_and_the_window(
    tmp_path, tiled, dtype, where
):
    scene = _truncated(tmp_path / "cut.tif", tiled=tiled, dtype=dtype)
    before = snapshot(tmp_path)
    out = tmp_path / "out" / "m.tif"
    result = run_cli(["segment", scene, "-t", "roofs", "-o", out, *TINY])
    line = assert_one_clear_line(result, f"cannot read {scene}", where, "truncated or corrupt")
    assert "See previous exception" not in line
    assert_unchanged(before, tmp_path)
    assert _partials(out.parent) == [] and not out.exists()


def test_several_scenes_go_on_past_a_truncated_one_whose_error_names_the_window(tmp_path):
    good = position_scene(tmp_path / "good.tif", 256, 256)
    cut = _truncated(tmp_path / "cut.tif", tiled=True)
    out = tmp_path / "out"
    result = run_cli(["segment", good, cut, "-t", "roofs", "-o", f"{out}/", *TINY, "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (failure,) = json.loads(result.stdout)["failed"]
    assert failure["scene"] == str(cut)
    assert failure["error"].startswith(f"cannot read {cut} at window column")
    assert sorted(p.name for p in out.iterdir()) == ["good.tif"]


def test_the_archive_ledger_records_the_truncated_scenes_line(tmp_path):
    source = tmp_path / "in"
    write_scene(source / "fine.tif")
    cut = write_scene(source / "cut.tif", width=512, height=512)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    out = tmp_path / "out"
    report = archive(
        source,
        out_dir=out,
        processor=field_processor(),
        model="stand-in",
        model_id="field-v1",
        prompts=PROMPTS,
        options=job_options(),
    )
    assert report.exit_code == 1
    with Ledger.for_output(out, readonly=True) as ledger:
        errors = {Path(row.input).name: row.error for row in ledger.rows()}
    assert errors["fine.tif"] is None
    assert f"cannot read {cut} at window column" in errors["cut.tif"]
    assert "See previous exception" not in errors["cut.tif"]


# --- VRTs ---------------------------------------------------------------------------------------

_VRT = """<VRTDataset rasterXSize="{size}" rasterYSize="{size}">
  <VRTRasterBand dataType="Byte" band="1">{source}</VRTRasterBand>
</VRTDataset>
"""
_SOURCE = """
    <SimpleSource>
      <SourceFilename relativeToVRT="1">{name}</SourceFilename>
      <SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="256" ySize="256"/>
      <DstRect xOff="0" yOff="0" xSize="256" ySize="256"/>
    </SimpleSource>"""


def _vrt(path: Path, source: str | None, size: int = 256) -> Path:
    path.write_text(_VRT.format(size=size, source=_SOURCE.format(name=source) if source else ""))
    return path


# --- hostile scenes and outputs, one clear line each --------------------------------------------


def _case(name: str, tmp_path: Path) -> tuple[list[object], tuple[str, ...]]:
    """The arguments of one hostile case and the fragments its line must hold."""
    scene = position_scene(tmp_path / "scene.tif", 256, 256)
    out = tmp_path / "out" / "m.tif"
    if name == "vrt-missing-source":
        return [_vrt(tmp_path / "a.vrt", "gone.tif"), out], ("a.vrt", "does not exist", "gone.tif")
    if name == "vrt-references-itself":
        return [_vrt(tmp_path / "a.vrt", "a.vrt"), out], ("a.vrt references itself",)
    if name == "vrt-loop-of-two":
        _vrt(tmp_path / "b.vrt", "a.vrt")
        return [_vrt(tmp_path / "a.vrt", "b.vrt"), out], ("cannot read", "Recursion")
    if name == "vrt-without-bands":
        (tmp_path / "z.vrt").write_text('<VRTDataset rasterXSize="256" rasterYSize="256"/>')
        return [tmp_path / "z.vrt", out], ("z.vrt is not a raster GDAL can read",)
    if name == "vrt-100000000-px-square":
        huge = _vrt(tmp_path / "huge.vrt", None, size=100_000_000)
        return [huge, out], ("huge.vrt", "needs about", "GiB of memory", "narrower pieces")
    if name == "zero-byte-tif":
        (tmp_path / "empty.tif").write_bytes(b"")
        return [tmp_path / "empty.tif", out], ("empty.tif is an empty file (0 bytes)",)
    if name == "complex-bands":
        data = (np.ones((1, 64, 64)) + 1j).astype("complex64")
        path = tmp_path / "slc.tif"
        profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="complex64")
        with rasterio.open(path, "w", crs=CRS_UTM, transform=TRANSFORM, **profile) as f:
            f.write(data)
        return [path, out], ("slc.tif holds complex64 (complex) bands", "amplitude")
    if name == "scene-is-a-folder":
        (tmp_path / "folder.tif").mkdir()
        return [tmp_path / "folder.tif", out], ("folder.tif is not a raster",)
    if name == "scene-is-a-symlink-loop":
        (tmp_path / "l1.tif").symlink_to(tmp_path / "l2.tif")
        (tmp_path / "l2.tif").symlink_to(tmp_path / "l1.tif")
        return [tmp_path / "l1.tif", out], ("l1.tif does not exist",)
    if name == "output-in-proc":
        return [scene, "/proc/diffris-m.tif"], ("/proc", "not writable")
    if name == "output-folder-is-a-file":
        (tmp_path / "masks").write_text("a file of mine")
        folder = f"{tmp_path / 'masks'}/"  # the "/" says: a folder
        return [scene, folder, "--overwrite", "--format", "gtiff"], (
            "masks is a file, not a folder",
        )
    if name == "max-memory-not-a-size":
        return [scene, out, "--max-memory", "lots"], ("--max-memory 'lots' is not a size",)
    raise AssertionError(name)


CASES = [
    "vrt-missing-source",
    "vrt-references-itself",
    "vrt-loop-of-two",
    "vrt-without-bands",
    "vrt-100000000-px-square",
    "zero-byte-tif",
    "complex-bands",
    "scene-is-a-folder",
    "scene-is-a-symlink-loop",
    "output-in-proc",
    "output-folder-is-a-file",
    "max-memory-not-a-size",
]


@pytest.mark.parametrize("name", CASES)
def test_a_hostile_scene_or_output_is_one_clear_line_and_changes_nothing(tmp_path, name):
    (scene, output, *extra), expected = _case(name, tmp_path)
    before = snapshot(tmp_path)
    result = run_cli(["segment", scene, "-t", "roofs", "-o", output, *TINY, *extra])
    assert_one_clear_line(result, *expected)
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "out" / "m.tif").exists()


# --- a run too big for memory -------------------------------------------------------------------


def _many_prompts(path: Path, count: int) -> Path:
    path.write_text("".join(f"- id: p{i}\n  text: thing number {i}\n" for i in range(count)))
    return path


@pytest.mark.parametrize("how", ["flag", "environment", "dry-run"])
def test_10000_prompts_are_refused_up_front_with_the_number_and_the_fix(tmp_path, how):
    scene = position_scene(tmp_path / "scene.tif", 256, 256)
    prompts = _many_prompts(tmp_path / "p.yaml", 10_000)
    out = tmp_path / "out" / "m.tif"
    args = ["segment", scene, "--prompts", prompts, "-o", out, "--model", "tiny"]
    env = None
    if how == "flag":
        args += ["--max-memory", "8G"]
    else:
        env = {"DIFFRIS_MAX_MEMORY": "8G"}
        args += ["--dry-run"] if how == "dry-run" else []
    result = run_cli(args, env=env)
    line = assert_one_clear_line(
        result, "with 10000 prompt(s) needs about", "GiB of memory", "8.0 GiB is allowed by"
    )
    assert "fewer prompts per run" in line and "--tile" in line
    assert "--batch-size" not in line  # the scene is one tile: batches cannot shrink
    assert not out.exists()


# --- odd scenes that are not errors -------------------------------------------------------------


def _odd_scene(name: str, tmp_path: Path) -> Path:
    if name == "png-without-georeferencing":
        from PIL import Image

        pixels = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "photo.png")
        return tmp_path / "photo.png"
    if name == "one-pixel":
        return position_scene(tmp_path / "one.tif", 1, 1)
    path = tmp_path / "nan.tif"
    profile = dict(driver="GTiff", width=70, height=50, count=1, dtype="float32")
    with rasterio.open(path, "w", crs=CRS_UTM, transform=TRANSFORM, **profile) as f:
        f.write(np.full((1, 50, 70), np.nan, np.float32))
    return path


@pytest.mark.filterwarnings("error::rasterio.errors.NotGeoreferencedWarning")  # logged, not raw
@pytest.mark.parametrize("name", ["png-without-georeferencing", "one-pixel", "nan-only"])
def test_odd_but_readable_scenes_run_with_at_most_a_warning(tmp_path, name):
    """A PNG without georeferencing is a picture, not an error: the mask shares its pixel grid
    (a warning says it has no CRS); one pixel is one padded tile; an all-NaN scene is all
    nodata (every tile skipped, a warning about its statistics)."""
    scene = _odd_scene(name, tmp_path)
    out = tmp_path / "out" / "m.tif"
    result = run_cli(["segment", scene, "-t", "roofs", "-o", out, *TINY, "--json"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "Warning:" not in result.stderr
    with warnings.catch_warnings():  # this test's own read of the PNG
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(scene) as source:
            size = (source.width, source.height)
    with rasterio.open(out) as written:
        assert (written.width, written.height) == size
        assert written.crs == (None if name.startswith("png") else CRS_UTM)
    (summary,) = json.loads(result.stdout)["scenes"]
    if name == "nan-only":
        assert summary["tiles"] == summary["skipped_tiles"] == 1
