"""Scene.may_hold_data: the pooled mask never rules out a window with a valid pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from diffris.geo.coverage import CELL
from diffris.geo.grid import Grid
from diffris.geo.scene import Scene
from tests.inference.nodata_scenes import (
    NodataKind,
    from_arrays,
    random_pixels,
    sparse_valid,
    write_scene,
)

WIDTH, HEIGHT = 1000, 900
MASKED = [kind for kind in NodataKind if kind is not NodataKind.NONE]


def _windows(seed: int = 0) -> list[Window]:
    """Grid tiles of two sizes, one-pixel windows around the lone pixels, random windows."""
    windows = [t.window for size in (128, 256) for t in Grid(WIDTH, HEIGHT, tile=size, overlap=32)]
    rng = np.random.default_rng(seed)
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(1, 300, 2))
        row, col = (
            int(rng.integers(0, HEIGHT - height + 1)),
            int(rng.integers(0, WIDTH - width + 1)),
        )
        windows.append(Window(col, row, width, height))
    for row, col in [(450, 450), (511, 511), (512, 31), (31, 32), (700, 300), (HEIGHT - 1, 0)]:
        for r, c in [(row, col), (row + 1, col), (row - 1, col), (row, col + 1), (row, col - 1)]:
            if 0 <= r < HEIGHT and 0 <= c < WIDTH:  # the pixel and its 1-px neighbours
                windows.append(Window(c, r, 1, 1))
    return windows


def _aligned_windows(seed: int = 1) -> list[Window]:
    """Windows on whole cells (or ending at the scene edge), where the answer is exact."""
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(300):
        row, col = (int(rng.integers(0, HEIGHT // CELL)) * CELL, int(rng.integers(0, 30)) * CELL)
        height = min(int(rng.integers(1, 9)) * CELL, HEIGHT - row)
        width = min(int(rng.integers(1, 9)) * CELL, WIDTH - col)
        windows.append(Window(col, row, width, height))
    return windows


@pytest.fixture(scope="module")
def valid() -> np.ndarray:
    return sparse_valid(WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory, valid: np.ndarray) -> dict[NodataKind, Path]:
    folder = tmp_path_factory.mktemp("coverage")
    rows = from_arrays(random_pixels(WIDTH, HEIGHT), valid)
    return {k: write_scene(folder / f"{k.value}.tif", WIDTH, HEIGHT, rows, k) for k in NodataKind}


def _has_valid(valid: np.ndarray, window: Window) -> bool:
    row, col = int(window.row_off), int(window.col_off)
    return bool(valid[row : row + int(window.height), col : col + int(window.width)].any())


@pytest.mark.parametrize("kind", MASKED, ids=lambda k: k.value)
def test_no_window_holding_a_valid_pixel_is_ruled_out(scenes, valid, kind) -> None:
    with Scene.open(scenes[kind]) as scene:
        for window in _windows():
            if _has_valid(valid, window):
                assert scene.may_hold_data(window), f"{kind.value}: {window} ruled out"
            # The full read, which decides whatever the map lets through, agrees with the truth.
            assert scene.read(window)[1].any() == _has_valid(valid, window)


@pytest.mark.parametrize("kind", MASKED, ids=lambda k: k.value)
def test_windows_on_whole_cells_are_ruled_out_exactly_when_empty(scenes, valid, kind) -> None:
    # Blocks full of data (the noise block's, rows 0-511 x columns 512-999) may be taken as
    # holding data without decoding them; everywhere else the answer is exact.
    busy = np.zeros_like(valid)
    busy[:512, 512:] = True
    with Scene.open(scenes[kind]) as scene:
        windows = [w for w in _aligned_windows() if not _has_valid(busy, w)]
        answers = [scene.may_hold_data(w) for w in windows]
    assert answers == [_has_valid(valid, w) for w in windows]
    assert len(windows) > 100 and not all(answers) and any(answers)


def test_a_scene_without_nodata_rules_nothing_out(scenes) -> None:
    with Scene.open(scenes[NodataKind.NONE]) as scene:
        assert all(scene.may_hold_data(w) for w in _aligned_windows())


def test_a_lone_valid_pixel_keeps_its_tile_in_every_kind(tmp_path: Path) -> None:
    # One valid pixel in the middle of a 512-px tile of nodata, in a scene of several tiles.
    valid = np.zeros((1024, 1536), bool)
    valid[700, 777] = True
    rows = from_arrays(random_pixels(1536, 1024), valid)
    grid = Grid(1536, 1024, tile=512, overlap=0)
    for kind in MASKED:
        path = write_scene(tmp_path / f"{kind.value}.tif", 1536, 1024, rows, kind)
        with Scene.open(path) as scene:
            kept = [t.index for t in grid if scene.may_hold_data(t.window)]
        assert kept == [grid.tile_at(1, 1).index], kind.value


def test_empty_blocks_are_known_from_their_bytes_and_mask_bands_are_decoded_once(scenes) -> None:
    known = {}
    for kind in (NodataKind.VALUE, NodataKind.ALPHA, NodataKind.INTERNAL_MASK):
        with Scene.open(scenes[kind]) as scene:
            for tile in Grid(WIDTH, HEIGHT, tile=256, overlap=32):
                scene.may_hold_data(tile.window)
            coverage = scene._coverage
            assert coverage is not None
            known[kind] = (coverage.decoded_px, coverage.known_empty_px, coverage.busy_px)
    # Every pixel's mask is decided once, from its decoded mask or its block's bytes.
    assert all(sum(counts) == WIDTH * HEIGHT for counts in known.values())
    assert known[NodataKind.VALUE][1] > 0 and known[NodataKind.ALPHA][1] > 0
    assert known[NodataKind.INTERNAL_MASK] == (WIDTH * HEIGHT, 0, 0)  # its bytes are elsewhere


def test_absent_blocks_of_a_sparse_file_read_as_gdal_fills_them(scenes) -> None:
    with rasterio.open(scenes[NodataKind.SPARSE]) as dataset:
        sizes = [
            dataset.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1)
            for r in range(4)
            for c in range(4)
        ]
    assert None in sizes or "0" in sizes  # the writer left nodata blocks out
    with Scene.open(scenes[NodataKind.SPARSE]) as scene:
        assert not scene.may_hold_data(Window(256, 768, 256, 132))
        assert scene.may_hold_data(Window(600, 100, 1, 1))


def _set_tiff_width(path: Path, width: int) -> None:
    """Rewrite a little-endian classic TIFF's ImageWidth tag in place (tiles stay as written)."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"II*\x00"
    ifd = int.from_bytes(data[4:8], "little")
    for entry in range(int.from_bytes(data[ifd : ifd + 2], "little")):
        at = ifd + 2 + 12 * entry
        if int.from_bytes(data[at : at + 2], "little") == 256:  # ImageWidth
            size = 2 if int.from_bytes(data[at + 2 : at + 4], "little") == 3 else 4
            data[at + 8 : at + 8 + size] = width.to_bytes(size, "little")
    path.write_bytes(bytes(data))


def test_an_edge_block_seen_empty_does_not_vouch_for_a_whole_block_of_the_same_bytes(
    tmp_path: Path,
) -> None:
    # Written 1024 wide, then cut to 1000: the last block column keeps 24 columns of data
    # beyond the scene edge, in a block whose bytes equal those of an interior block below,
    # whose data lies in those same 24 columns.
    valid = np.zeros((512, 1024), bool)
    valid[10:20, 1000:] = True  # block (0, 3): outside the cut scene
    valid[266:276, 488:512] = True  # block (1, 1): the same pixels, inside the scene
    data = np.where(valid, 200, 0).astype(np.uint8)[None].repeat(3, axis=0)
    path = write_scene(tmp_path / "cut.tif", 1024, 512, from_arrays(data, valid), NodataKind.VALUE)
    _set_tiff_width(path, 1000)
    with rasterio.open(path) as dataset:
        assert dataset.width == 1000
        tags = [
            dataset.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1)
            for c, r in ((3, 0), (1, 1))
        ]
        assert tags[0] and tags[1]
    with Scene.open(path) as scene:
        assert not scene.may_hold_data(Window(768, 0, 232, 256))
        assert scene.may_hold_data(Window(488, 266, 24, 10))
