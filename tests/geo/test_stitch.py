"""Stitcher: seamless blending, streaming in bounded memory, nodata, order and determinism.

Tiles are read from real GeoTIFFs through Scene and Grid, "predicted" by stand-ins, and stitched
the way the segment command does it: read, pad to the frame, skip all-nodata tiles, predict in
batches, add in grid order.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rasters import smooth_field, write_raster

from diffris.geo.grid import Grid, Tile
from diffris.geo.scene import Scene
from diffris.geo.stitch import Stitcher

#: predict(tiles, images (B, 3, T, T) uint8, valid (B, T, T) bool) -> (B, P, T, T) float32
Predict = Callable[[list[Tile], np.ndarray, np.ndarray], np.ndarray]


class Collector:
    """An emit consumer that assembles the scene and records the emitted row ranges."""

    def __init__(self, n_prompts: int, width: int, height: int) -> None:
        self.probs = np.full((n_prompts, height, width), -1.0, dtype=np.float32)
        self.valid = np.zeros((height, width), dtype=bool)
        self.ranges: list[tuple[int, int]] = []

    def __call__(self, row_off: int, probs: np.ndarray, valid: np.ndarray) -> None:
        assert probs.dtype == np.float32 and valid.dtype == np.bool_
        rows = probs.shape[1]
        self.ranges.append((row_off, row_off + rows))
        self.probs[:, row_off : row_off + rows] = probs
        self.valid[row_off : row_off + rows] = valid


def smooth_predictor(n_prompts: int) -> Predict:
    """Probabilities that depend only on map position, from each tile's absolute pixels."""

    def predict(tiles: list[Tile], images: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out = []
        for t in tiles:
            rows = (t.row_off + np.arange(t.frame_height))[:, None]
            cols = (t.col_off + np.arange(t.frame_width))[None, :]
            out.append([smooth_field(rows, cols, phase=p) for p in range(n_prompts)])
        return np.asarray(out, dtype=np.float32)

    return predict


def tile_constant(tile: Tile) -> float:
    """Neighbours (row or column +-1) always differ: 3 and 7 are non-zero modulo 11."""
    return 0.2 + 0.06 * ((tile.row * 3 + tile.col * 7) % 11)


def constant_predictor(tiles: list[Tile], images: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One value per tile, different between neighbours."""
    shape = (len(tiles), 1, tiles[0].frame_height, tiles[0].frame_width)
    values = np.array([tile_constant(t) for t in tiles], dtype=np.float32)
    return np.broadcast_to(values[:, None, None, None], shape).copy()


def run(
    scene: Scene, grid: Grid, predict: Predict, n_prompts: int, *, batch: int = 4
) -> tuple[Collector, list[int]]:
    """Scene -> Grid -> batches -> predict -> Stitcher; returns the collector and skipped tiles."""
    collector = Collector(n_prompts, grid.width, grid.height)
    stitcher = Stitcher(grid, n_prompts, collector)
    skipped: list[int] = []
    pending: list[tuple[Tile, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        tiles = [p[0] for p in pending]
        probs = predict(tiles, np.stack([p[1] for p in pending]), np.stack([p[2] for p in pending]))
        for (tile, _, valid), tile_probs in zip(pending, probs, strict=True):
            stitcher.add(tile, tile_probs, valid)
        pending.clear()

    for tile in grid:
        image, valid = scene.read(tile.window)
        if not valid.any():
            skipped.append(tile.index)
            continue
        pending.append((tile, tile.pad(image), tile.pad(valid, fill=False)))
        if len(pending) == batch:
            flush()
    flush()
    stitcher.close()
    return collector, skipped


def grey_scene(tmp_path: Path, width: int, height: int, **kwargs: object) -> Path:
    data = (np.indices((height, width)).sum(axis=0) % 251).astype(np.uint8)
    return write_raster(tmp_path / f"scene_{width}x{height}.tif", data, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("width", "height"), [(1000, 777), (300, 1300), (200, 150)])
@pytest.mark.parametrize(("tile", "overlap"), [(128, 0), (128, 32), (256, 64), (512, 64)])
def test_smooth_prediction_is_reproduced_without_seams(
    tmp_path: Path, width: int, height: int, tile: int, overlap: int
) -> None:
    grid = Grid(width, height, tile=tile, overlap=overlap)
    with Scene.open(grey_scene(tmp_path, width, height)) as scene:
        result, skipped = run(scene, grid, smooth_predictor(2), 2)
    rows, cols = np.indices((height, width))
    assert not skipped and result.valid.all()
    for prompt in range(2):
        expected = smooth_field(rows, cols, phase=prompt)
        np.testing.assert_allclose(result.probs[prompt], expected, atol=1e-3)


@pytest.mark.parametrize(("tile", "overlap"), [(128, 32), (256, 64)])
def test_per_tile_predictions_are_blended_across_overlaps(
    tmp_path: Path, tile: int, overlap: int
) -> None:
    width, height = 1000, 777
    grid = Grid(width, height, tile=tile, overlap=overlap)
    with Scene.open(grey_scene(tmp_path, width, height)) as scene:
        result, _ = run(scene, grid, constant_predictor, 1)
    probs = result.probs[0]
    values = [tile_constant(t) for t in grid]
    biggest_step = max(values) - min(values)
    # The steepest normalised hand-over is the ramp's slope, pi / (2 overlap) per pixel (x2 for
    # corners where two axes hand over at once); a hard cut would jump by a whole step.
    bound = 2 * biggest_step * np.pi / (2 * overlap)
    assert np.abs(np.diff(probs, axis=1)).max() < bound < biggest_step / 2
    assert np.abs(np.diff(probs, axis=0)).max() < bound
    # Centres keep their tile's value; overlaps hold values strictly between neighbours.
    first, second = grid.tile_at(0, 0), grid.tile_at(0, 1)
    assert probs[overlap + 5, overlap + 5] == pytest.approx(tile_constant(first), abs=1e-6)
    middle = probs[overlap + 5, second.col_off + overlap // 2]
    lo, hi = sorted((tile_constant(first), tile_constant(second)))
    assert lo + 0.1 * (hi - lo) < middle < hi - 0.1 * (hi - lo)


def test_rows_stream_out_in_order_with_bounded_memory() -> None:
    width, height, tile, overlap = 200, 20_000, 128, 32
    grid = Grid(width, height, tile=tile, overlap=overlap)
    ranges: list[tuple[int, int]] = []
    emitted_when: list[int] = []
    added = 0

    def emit(row_off: int, probs: np.ndarray, valid: np.ndarray) -> None:
        ranges.append((row_off, row_off + probs.shape[1]))
        emitted_when.append(added)
        assert valid.all() and probs.shape == (2, probs.shape[1], width)

    stitcher = Stitcher(grid, 2, emit)
    tracemalloc.start()
    try:
        for t in grid:
            rows = (t.row_off + np.arange(tile))[:, None]
            cols = (t.col_off + np.arange(tile))[None, :]
            probs = np.stack([smooth_field(rows, cols), smooth_field(rows, cols, 1.0)])
            stitcher.add(t, probs.astype(np.float32), np.ones((tile, tile), bool))
            added += 1
            # Everything above the current grid row has already gone to the consumer.
            assert stitcher.rows_emitted == t.row_off
        stitcher.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [start for start, _ in ranges] == [0, *(end for _, end in ranges[:-1])]
    assert ranges[-1][1] == height
    assert stitcher.peak_rows <= tile  # within the tile + stride bound
    assert emitted_when[0] <= 2 * grid.n_cols  # the first rows leave after the second grid row
    full_scene = 3 * height * width * 4  # two prompts and the weights, float32, whole scene
    assert peak < full_scene / 20


def test_nodata_gets_zero_weight_and_comes_out_as_nodata(tmp_path: Path) -> None:
    width, height = 700, 600
    data = np.full((3, height, width), 1000, np.uint16)
    data[:, 100:180, 200:420] = 0  # a hole inside several tiles and overlaps
    data[:, 450:, :] = 0  # whole tile rows of nodata: skipped upstream
    path = write_raster(tmp_path / "holes.tif", data, nodata=0)
    grid = Grid(width, height, tile=128, overlap=32)

    def garbage_at_nodata(tiles: list[Tile], images: np.ndarray, valid: np.ndarray) -> np.ndarray:
        probs = smooth_predictor(1)(tiles, images, valid)
        probs[:, 0][~valid] = np.nan  # must not leak into valid pixels
        return probs

    with Scene.open(path) as scene:
        result, skipped = run(scene, grid, garbage_at_nodata, 1)
    expected_valid = data[0] != 0
    np.testing.assert_array_equal(result.valid, expected_valid)
    assert np.isnan(result.probs[0][~expected_valid]).all()
    rows, cols = np.indices((height, width))
    np.testing.assert_allclose(
        result.probs[0][expected_valid], smooth_field(rows, cols)[expected_valid], atol=1e-3
    )
    skipped_rows = {grid.tile_by_index(i).row for i in skipped}
    assert skipped and max(skipped_rows) == grid.n_rows - 1  # close() emits the skipped tail
    assert sorted(result.ranges) == result.ranges and result.ranges[-1][1] == height


def test_skipped_middle_rows_are_emitted_as_nodata_in_bounded_blocks() -> None:
    grid = Grid(256, 3000, tile=128, overlap=0)
    ranges: list[tuple[int, int]] = []
    seen_valid: list[bool] = []

    def emit(row_off: int, probs: np.ndarray, valid: np.ndarray) -> None:
        ranges.append((row_off, row_off + valid.shape[0]))
        seen_valid.append(bool(valid.any()))
        assert np.isnan(probs[:, ~valid]).all()

    stitcher = Stitcher(grid, 1, emit)
    ones = np.ones((128, 128), bool)
    first, last = grid.tile_at(0, 0), grid.tile_at(grid.n_rows - 1, 1)
    stitcher.add(first, np.full((1, 128, 128), 0.25, np.float32), ones)
    stitcher.add(last, np.full((1, 128, 128), 0.75, np.float32), ones)
    stitcher.close()
    assert ranges[0] == (0, 128) and ranges[-1][1] == 3000
    assert all(end - start <= 128 for start, end in ranges)
    assert [start for start, _ in ranges[1:]] == [end for _, end in ranges[:-1]]
    assert seen_valid[0] and seen_valid[-1] and not any(seen_valid[1:-1])


def test_a_scene_without_any_tile_is_emitted_entirely_as_nodata() -> None:
    grid = Grid(300, 700, tile=256, overlap=64)
    collector = Collector(2, 300, 700)
    stitcher = Stitcher(grid, 2, collector)
    assert stitcher.nbytes == 3 * 256 * 300 * 4
    stitcher.close()
    assert collector.ranges == [(0, 256), (256, 512), (512, 700)]
    assert not collector.valid.any() and np.isnan(collector.probs).all()


def test_outputs_do_not_depend_on_batch_size(tmp_path: Path) -> None:
    grid = Grid(500, 400, tile=128, overlap=32)
    with Scene.open(grey_scene(tmp_path, 500, 400)) as scene:
        one, _ = run(scene, grid, smooth_predictor(1), 1, batch=1)
        seven, _ = run(scene, grid, smooth_predictor(1), 1, batch=7)
    assert one.probs.tobytes() == seven.probs.tobytes()


def test_window_sized_and_frame_sized_inputs_agree() -> None:
    grid = Grid(100, 90, tile=128, overlap=0)
    (tile,) = list(grid)
    frame = np.random.default_rng(0).uniform(size=(1, 128, 128)).astype(np.float32)
    outputs = []
    for probs, valid in (
        (frame, np.ones((128, 128), bool)),
        (tile.crop(frame), np.ones((90, 100), bool)),
    ):
        collector = Collector(1, 100, 90)
        stitcher = Stitcher(grid, 1, collector)
        stitcher.add(tile, probs, valid)
        stitcher.close()
        outputs.append(collector.probs)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0][0], frame[0, :90, :100], rtol=1e-6)


def test_misuse_is_refused() -> None:
    grid = Grid(300, 300, tile=128, overlap=32)
    stitcher = Stitcher(grid, 1, lambda *_: None)
    probs, valid = np.zeros((1, 128, 128), np.float32), np.ones((128, 128), bool)
    stitcher.add(grid.tile_by_index(3), probs, valid)
    with pytest.raises(RuntimeError, match="row-major order: tile 1 after 3"):
        stitcher.add(grid.tile_by_index(1), probs, valid)
    with pytest.raises(RuntimeError, match="tile 3 after 3"):
        stitcher.add(grid.tile_by_index(3), probs, valid)
    with pytest.raises(ValueError, match="does not belong"):
        stitcher.add(Grid(400, 300, tile=128, overlap=32).tile_by_index(5), probs, valid)
    with pytest.raises(ValueError, match=r"probs has shape \(2, 128, 128\)"):
        stitcher.add(grid.tile_by_index(4), np.zeros((2, 128, 128), np.float32), valid)
    with pytest.raises(ValueError, match="not finite"):
        stitcher.add(grid.tile_by_index(4), np.full((1, 128, 128), np.nan, np.float32), valid)
    stitcher.add(grid.tile_by_index(4), probs, valid)  # a refused tile changed nothing
    stitcher.close()
    with pytest.raises(RuntimeError, match="after close"):
        stitcher.add(grid.tile_by_index(8), probs, valid)
