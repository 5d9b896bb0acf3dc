"""Skipping nodata by the pooled mask: the same output bytes as reading every window in full."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from diffris.data.prompts import Prompt
from diffris.geo.coverage import CELL
from diffris.geo.grid import Grid
from diffris.geo.scene import Scene
from diffris.inference.batches import prefetch_batches
from diffris.inference.segment import SegmentOptions, segment_scene
from tests.inference.nodata_scenes import NodataKind, from_arrays, sparse_valid, write_scene
from tests.inference.scenes import PositionPredictor

PROMPTS = [Prompt(id="a", text="the first thing"), Prompt(id="b", text="the second thing")]
WIDTH, HEIGHT = 1000, 900
OPTIONS = SegmentOptions(tile=128, overlap=32, batch_size=3)


def _position_pixels(width: int, height: int) -> np.ndarray:
    """(3, h, w) uint8 that PositionPredictor decodes back to each pixel's position."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, 16 * (y // 256) + x // 256]).astype(np.uint8)


@pytest.fixture(scope="module")
def valid() -> np.ndarray:
    return sparse_valid(WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory, valid: np.ndarray) -> dict[NodataKind, Path]:
    folder = tmp_path_factory.mktemp("nodata-kinds")
    rows = from_arrays(_position_pixels(WIDTH, HEIGHT), valid)
    return {k: write_scene(folder / f"{k.value}.tif", WIDTH, HEIGHT, rows, k) for k in NodataKind}


def _segment(scene: Path, out: Path) -> tuple[Any, PositionPredictor]:
    predictor = PositionPredictor(2)
    result = segment_scene(scene, out, predictor, PROMPTS, OPTIONS, model_id="stand-in")
    return result, predictor


@pytest.mark.parametrize("kind", list(NodataKind), ids=lambda k: k.value)
def test_output_bytes_equal_those_of_reading_every_window_in_full(
    scenes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: NodataKind
) -> None:
    pooled, pooled_model = _segment(scenes[kind], tmp_path / "pooled.tif")
    with monkeypatch.context() as patch:  # the reference: every window read, as before
        patch.setattr(Scene, "may_hold_data", lambda self, window: True)
        full, full_model = _segment(scenes[kind], tmp_path / "full.tif")
    assert (tmp_path / "pooled.tif").read_bytes() == (tmp_path / "full.tif").read_bytes()
    assert pooled.skipped_tiles == full.skipped_tiles
    assert pooled_model.tiles_seen == full_model.tiles_seen
    assert (pooled.skipped_tiles > 0) == (kind is not NodataKind.NONE)


def test_a_lone_valid_pixel_is_predicted_and_written(scenes, tmp_path: Path) -> None:
    _segment(scenes[NodataKind.VALUE], tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as written:
        masks = written.read()
    nodata = written.nodata
    for row, col in [(450, 450), (HEIGHT - 130, 130), (0, WIDTH - 1)]:
        assert (masks[:, row, col] != nodata).all(), (row, col)
        assert (masks[:, row, col - 1] == nodata).all()  # its neighbour is nodata


def _has_valid(valid: np.ndarray, window: Any) -> bool:
    row, col = int(window.row_off), int(window.col_off)
    return bool(valid[row : row + int(window.height), col : col + int(window.width)].any())


class _CountingDataset:
    """The real rasterio dataset, counting full data reads and mask pixels read."""

    def __init__(self, dataset: Any) -> None:
        self._dataset = dataset
        self.data_windows: list[Any] = []
        self.mask_pixels = 0

    def read(self, *args: Any, **kwargs: Any) -> np.ndarray:
        self.data_windows.append(kwargs["window"])
        return self._dataset.read(*args, **kwargs)

    def read_masks(self, *args: Any, **kwargs: Any) -> np.ndarray:
        masks = self._dataset.read_masks(*args, **kwargs)
        self.mask_pixels += masks.shape[-2] * masks.shape[-1]
        return masks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)


@pytest.mark.parametrize(
    "kind", [NodataKind.VALUE, NodataKind.INTERNAL_MASK, NodataKind.ALPHA], ids=lambda k: k.value
)
def test_skipped_windows_are_never_read(scenes, valid, kind: NodataKind) -> None:
    spec = Scene.open(scenes[kind]).spec
    counting = _CountingDataset(rasterio.open(scenes[kind]))
    grid = Grid(WIDTH, HEIGHT, tile=128, overlap=32)
    batches = list(prefetch_batches(lambda: Scene(counting, spec), grid, 4))
    predicted = sum(len(b.tiles) for b in batches)
    empty = sum(not _has_valid(valid, t.window) for t in grid)
    assert sum(b.skipped for b in batches) == empty > len(grid) // 2
    # A tile is read only if it holds a valid pixel, or is snapped to the scene edge off the
    # map's 32-px cells (its cells reach past it), to be skipped by that full read.
    read = [w for w in counting.data_windows if not _has_valid(valid, w)]
    assert len(counting.data_windows) == predicted + len(read)
    assert all(w.row_off % CELL or w.col_off % CELL for w in read)
    # The masks read are those of the windows read in full plus the pooled map's.
    tile_masks = sum(int(w.height * w.width) for w in counting.data_windows)
    assert counting.mask_pixels - tile_masks <= WIDTH * HEIGHT  # each pixel once, at most
