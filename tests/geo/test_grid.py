"""Grid: deterministic overlapping windows, snapped edges, padding and validation."""

from __future__ import annotations

import numpy as np
import pytest

from diffris.errors import InputError
from diffris.geo.grid import Grid, PadMode

SIZES = [(1000, 777, 256, 64), (300, 1300, 512, 64), (1000, 777, 128, 0), (64, 64, 64, 32)]


@pytest.mark.parametrize(("width", "height", "tile", "overlap"), SIZES)
def test_windows_cover_the_scene_and_stay_inside(
    width: int, height: int, tile: int, overlap: int
) -> None:
    grid = Grid(width, height, tile=tile, overlap=overlap)
    coverage = np.zeros((height, width), dtype=np.int32)
    for t in grid:
        assert t.col_off >= 0 and t.row_off >= 0
        assert t.col_off + t.width <= width and t.row_off + t.height <= height
        assert (t.frame_height, t.frame_width) == (tile, tile)
        coverage[t.row_off : t.row_off + t.height, t.col_off : t.col_off + t.width] += 1
    assert coverage.min() >= 1
    # Regular neighbours share exactly `overlap` px; the snapped last one shares more.
    for offsets, extent in ((grid.col_offsets, width), (grid.row_offsets, height)):
        assert offsets[0] == 0
        steps = np.diff(offsets)
        if len(steps):
            assert (steps[:-1] == grid.stride).all()
            assert 0 < steps[-1] <= grid.stride
            assert offsets[-1] + tile == extent


def test_last_row_and_column_snap_to_the_edge() -> None:
    grid = Grid(1000, 777, tile=256, overlap=64)
    assert grid.col_offsets == (0, 192, 384, 576, 744)
    assert grid.row_offsets == (0, 192, 384, 521)
    last = grid.tile_at(grid.n_rows - 1, grid.n_cols - 1)
    assert (last.col_off + last.width, last.row_off + last.height) == (1000, 777)
    assert (last.width, last.height) == (256, 256) and not last.padded
    assert last.bottom and last.right and not last.top and not last.left


def test_scene_smaller_than_a_tile_is_one_padded_window() -> None:
    grid = Grid(100, 300, tile=512, overlap=64)
    assert len(grid) == 1
    (only,) = list(grid)
    assert (only.col_off, only.row_off, only.width, only.height) == (0, 0, 100, 300)
    assert (only.pad_bottom, only.pad_right) == (212, 412) and only.padded
    assert only.top and only.bottom and only.left and only.right
    image = np.arange(3 * 300 * 100, dtype=np.uint16).reshape(3, 300, 100)
    framed = only.pad(image)
    assert framed.shape == (3, 512, 512)
    assert (framed[:, 300:, :] == 0).all() and (framed[:, :, 100:] == 0).all()
    np.testing.assert_array_equal(only.crop(framed), image)
    mirrored = only.pad(image, mode=PadMode.REFLECT)
    np.testing.assert_array_equal(mirrored[:, 300, :100], image[:, 299])
    valid = only.pad(np.ones((300, 100), bool), fill=False)
    assert valid.sum() == 300 * 100


def test_narrow_tall_scene_pads_only_the_short_axis() -> None:
    grid = Grid(300, 1300, tile=512, overlap=64)
    assert grid.col_offsets == (0,) and grid.row_offsets == (0, 448, 788)
    for t in grid:
        assert (t.width, t.height, t.pad_right, t.pad_bottom) == (300, 512, 212, 0)
        assert t.left and t.right


def test_tiles_are_row_major_with_borders() -> None:
    grid = Grid(700, 500, tile=256, overlap=32)
    tiles = list(grid)
    assert [t.index for t in tiles] == list(range(len(grid)))
    assert [(t.row, t.col) for t in tiles] == [
        (r, c) for r in range(grid.n_rows) for c in range(grid.n_cols)
    ]
    for t in tiles:
        assert grid.tile_by_index(t.index) == t
        assert t.top == (t.row == 0) and t.bottom == (t.row == grid.n_rows - 1)
        assert t.left == (t.col == 0) and t.right == (t.col == grid.n_cols - 1)
    assert grid.tiles_in_row(1) == tiles[grid.n_cols : 2 * grid.n_cols]
    with pytest.raises(IndexError):
        grid.tile_at(grid.n_rows, 0)


def test_rows_done_after_bounds_every_later_tile() -> None:
    grid = Grid(400, 2000, tile=256, overlap=64)
    for row in range(grid.n_rows):
        done = grid.rows_done_after(row)
        later = [t for t in grid if t.row > row]
        assert all(t.row_off >= done for t in later)
        if later:
            assert min(t.row_off for t in later) == done
    assert grid.rows_done_after(grid.n_rows - 1) == 2000


@pytest.mark.parametrize(
    ("tile", "overlap", "message"),
    [
        (500, 64, "--tile 500 is not a multiple of 64; use e.g. 512"),
        (0, 0, "--tile 0 is not a multiple of 64; use e.g. 64"),
        (512, -1, "--overlap -1 is negative"),
        (512, 300, "--overlap 300 is more than half of --tile 512; use at most 256"),
    ],
)
def test_bad_tile_or_overlap_is_a_clear_error(tile: int, overlap: int, message: str) -> None:
    with pytest.raises(InputError, match="^" + message.replace("+", r"\+")) as info:
        Grid(1000, 1000, tile=tile, overlap=overlap)
    assert "\n" not in str(info.value)


def test_empty_scene_is_rejected() -> None:
    with pytest.raises(InputError, match="empty scene of 0 x 10"):
        Grid(0, 10)
