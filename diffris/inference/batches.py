"""Batches of tiles read ahead of the model, in the grid's row-major order.

A background thread reads and pads windows while the model works on the previous batch
(rasterio releases the GIL while GDAL reads and decodes), so reading overlaps compute. Tiles
whose every pixel is nodata are skipped here: the model never sees them and the stitcher
writes their rows as nodata. A tile the scene's pooled mask rules out
(:meth:`WindowSource.may_hold_data`) is skipped without being read; any other is read in full
and skipped if it has no valid pixel, so the same tiles are skipped either way.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from rasterio.windows import Window

from diffris.geo.grid import Grid, PadMode, Tile


class WindowSource(Protocol):
    """A scene handle that reads windows (:class:`diffris.geo.scene.Scene` is one)."""

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Returns (3, h, w) uint8 RGB and (h, w) bool valid pixels."""
        ...

    def may_hold_data(self, window: Window) -> bool:
        """False only if no pixel of ``window`` can be valid (decided without reading it)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TileBatch:
    """Tiles ready for the model.

    Attributes:
        tiles: the grid tiles, in row-major order.
        frames: (B, 3, T, T) uint8 RGB, padded to the tile frame.
        valid: (B, T, T) bool, False for nodata and padding.
        skipped: tiles before this batch's first tile that were all nodata.
    """

    tiles: list[Tile]
    frames: np.ndarray
    valid: np.ndarray
    skipped: int


_DONE = object()


def _read_batches(
    open_source: Callable[[], WindowSource], tiles: Sequence[Tile], frame: int, batch_size: int
) -> Iterator[TileBatch]:
    source = open_source()
    try:
        yield from _batches_from(source, tiles, frame, batch_size)
    finally:
        source.close()


def _batches_from(
    source: WindowSource, grid_tiles: Sequence[Tile], frame: int, batch_size: int
) -> Iterator[TileBatch]:
    read, may_hold_data = source.read, source.may_hold_data
    tiles: list[Tile] = []
    frames: list[np.ndarray] = []
    valids: list[np.ndarray] = []
    skipped = 0
    for tile in grid_tiles:
        if not may_hold_data(tile.window):
            skipped += 1
            continue
        rgb, valid = read(tile.window)
        if not valid.any():
            skipped += 1
            continue
        tiles.append(tile)
        frames.append(tile.pad(rgb, mode=PadMode.REFLECT))
        valids.append(tile.pad(valid, fill=False))
        if len(tiles) == batch_size:
            yield TileBatch(tiles, np.stack(frames), np.stack(valids), skipped)
            tiles, frames, valids, skipped = [], [], [], 0
    if tiles or skipped:
        frames_array = np.stack(frames) if frames else np.zeros((0, 3, frame, frame), np.uint8)
        valid_array = np.stack(valids) if valids else np.zeros((0, frame, frame), bool)
        yield TileBatch(tiles, frames_array, valid_array, skipped)


def prefetch_batches(
    open_source: Callable[[], WindowSource],
    grid: Grid,
    batch_size: int,
    *,
    depth: int = 2,
    tiles: Sequence[Tile] | None = None,
) -> Iterator[TileBatch]:
    """Yield :class:`TileBatch` es read by a background thread, ``depth`` batches ahead.

    Args:
        open_source: called once, in the reading thread, to get a scene handle of its own
            (a rasterio dataset must not be shared between threads); closed at the end.
        grid: the grid the tiles come from.
        batch_size: tiles per batch (the last batch may be smaller, or empty with only
            ``skipped`` set).
        depth: batches held ready at most; bounds memory.
        tiles: the tiles to read, in row-major order; None for the whole grid.

    Raises:
        Whatever the reader raised, re-raised in the consuming thread.
    """
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        """Hand ``item`` over unless the consumer has gone; False when it has."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            chosen = list(grid) if tiles is None else tiles
            for batch in _read_batches(open_source, chosen, grid.tile, batch_size):
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(error)

    thread = threading.Thread(target=produce, name="diffris-tile-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, TileBatch)
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
