"""Streaming blend of overlapping tile probabilities into finished scene rows.

The stitcher accumulates ``sum(w * p)`` per prompt and ``sum(w)`` over a band of open rows, where
``w`` is the tile's :func:`~diffris.geo.blend.weight_window` times its valid mask (nodata gets
zero weight). Tiles arrive in the grid's row-major order, so when the first tile of grid row
``r`` arrives, every scene row above that row's start is final: those rows are normalised, handed
to ``emit`` and dropped. Memory is therefore ``(prompts + 1) x tile x scene width`` float32,
never proportional to the scene's area.

Skipped tiles (all nodata, never predicted) simply contribute no weight; their rows are still
emitted, as nodata. Thresholding happens once, on the normalised rows (see
:meth:`diffris.geo.sinks.spec.OutputSpec.encode`), never per tile.

Accumulation order is the grid order whatever the batch size, so the output is bitwise
independent of how tiles were batched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from diffris.geo.blend import weight_window
from diffris.geo.grid import Grid, Tile

__all__ = ["EmitFn", "Stitcher"]

logger = logging.getLogger(__name__)

#: ``emit(row_off, probs, valid)``: ``probs`` (P, rows, width) float32 normalised probabilities
#: with NaN where ``valid`` is False; ``valid`` (rows, width) bool. Both are fresh arrays the
#: consumer may keep.
EmitFn = Callable[[int, np.ndarray, np.ndarray], None]


class Stitcher:
    """Blend tiles of ``grid`` and emit finished rows top to bottom.

    Args:
        grid: the grid the tiles come from.
        n_prompts: number of probability maps per tile (one per prompt).
        emit: called with consecutive row blocks that together cover the scene exactly once,
            in order; see :data:`EmitFn`.

    Not thread-safe: call :meth:`add` from one thread, in row-major tile order.
    """

    def __init__(
        self, grid: Grid, n_prompts: int, emit: EmitFn, *, grid_rows: range | None = None
    ) -> None:
        if n_prompts <= 0:
            raise ValueError(f"n_prompts must be positive, got {n_prompts}")
        self.grid = grid
        #: Grid rows whose tiles are added (all by default). Rows from the first one's offset
        #: to the end of the last one are emitted; the caller keeps those it needs (a part of
        #: a scene split across workers): rows above the selection's second grid row may lack
        #: the contributions of unselected tiles above.
        self.grid_rows = grid_rows if grid_rows is not None else range(grid.n_rows)
        if (
            not self.grid_rows
            or self.grid_rows.step != 1
            or not (self.grid_rows.start >= 0 and self.grid_rows.stop <= grid.n_rows)
        ):
            raise ValueError(f"grid_rows {grid_rows} is not a run of rows of {grid!r}")
        self._end = grid.rows_done_after(self.grid_rows.stop - 1)
        self.n_prompts = n_prompts
        self._emit = emit
        #: Rows the band can hold: one tile's height is enough (see module docstring).
        self.capacity = min(grid.tile, grid.height)
        self._acc = np.zeros((n_prompts, self.capacity, grid.width), dtype=np.float32)
        self._wsum = np.zeros((self.capacity, grid.width), dtype=np.float32)
        # scene row held in band row 0; every row above it has been emitted (or is not ours)
        self._base = grid.row_offsets[self.grid_rows.start]
        self._last_index = -1
        self._row = -1
        self._closed = False
        self._weights: dict[tuple[bool, bool, bool, bool], np.ndarray] = {}
        #: Largest number of scene rows held at once (for tests and memory reports).
        self.peak_rows = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the open band: ``(P + 1) x capacity x width`` float32."""
        return int(self._acc.nbytes + self._wsum.nbytes)

    @property
    def rows_emitted(self) -> int:
        """Scene rows ``[0, rows_emitted)`` have been handed to ``emit``."""
        return self._base

    def add(self, tile: Tile, probs: np.ndarray, valid: np.ndarray) -> None:
        """Blend one tile's probabilities in.

        Args:
            tile: a tile of :attr:`grid`; tiles must come in increasing ``tile.index``.
            probs: (P, frame_h, frame_w) or (P, h, w) probabilities in [0, 1].
            valid: (frame_h, frame_w) or (h, w) bool, False for nodata (and padding).

        Raises:
            RuntimeError: a tile out of row-major order, or after :meth:`close`.
            ValueError: a tile of another grid, arrays of the wrong shape, or non-finite
                probabilities at valid pixels.
        """
        if self._closed:
            raise RuntimeError("Stitcher.add() called after close()")
        if tile.index <= self._last_index:
            raise RuntimeError(
                f"tiles must arrive in row-major order: tile {tile.index} after {self._last_index}"
            )
        if not 0 <= tile.index < len(self.grid) or self.grid.tile_by_index(tile.index) != tile:
            raise ValueError(f"tile {tile.index} does not belong to {self.grid!r}")
        if tile.row not in self.grid_rows:
            raise ValueError(f"tile {tile.index} is outside grid rows {self.grid_rows}")
        valid = self._fit(tile, valid, "valid", ()).astype(bool, copy=False)
        # Padding and nodata may hold anything (even NaN); only valid pixels are blended.
        probs = self._fit(tile, probs, "probs", (self.n_prompts,))
        probs = np.where(valid, probs, np.float32(0)).astype(np.float32, copy=False)
        if not np.isfinite(probs).all():
            raise ValueError(f"tile {tile.index}: probabilities are not finite at valid pixels")
        self._last_index = tile.index
        if tile.row != self._row:
            # No later tile starts above this row's offset: everything above it is final.
            self._flush(tile.row_off)
            self._row = tile.row
        weights = self._weight(tile) * valid
        top = tile.row_off - self._base
        rows = slice(top, top + tile.height)
        cols = slice(tile.col_off, tile.col_off + tile.width)
        self._acc[:, rows, cols] += weights * probs
        self._wsum[rows, cols] += weights
        self.peak_rows = max(self.peak_rows, top + tile.height)

    def close(self) -> None:
        """Emit the remaining rows and check the whole scene was emitted once."""
        if self._closed:
            return
        self._flush(self._end)
        self._closed = True
        if self._base != self._end:  # pragma: no cover - guards the flush logic
            raise RuntimeError(f"emitted rows up to {self._base}, not {self._end}")

    def _fit(self, tile: Tile, array: np.ndarray, name: str, lead: tuple[int, ...]) -> np.ndarray:
        """Crop a frame-sized array to the tile's valid part; check the shape."""
        frame = (*lead, tile.frame_height, tile.frame_width)
        window = (*lead, tile.height, tile.width)
        if array.shape == frame:
            return tile.crop(array)
        if array.shape == window:
            return array
        raise ValueError(f"tile {tile.index}: {name} has shape {array.shape}; expected {frame}")

    def _weight(self, tile: Tile) -> np.ndarray:
        """The tile's blending window cropped to its valid part (cached per border combo)."""
        key = (tile.top, tile.bottom, tile.left, tile.right)
        if key not in self._weights:
            self._weights[key] = weight_window(
                tile.frame_height,
                tile.frame_width,
                self.grid.overlap,
                top=tile.top,
                bottom=tile.bottom,
                left=tile.left,
                right=tile.right,
            )
        return tile.crop(self._weights[key])

    def _flush(self, upto: int) -> None:
        """Normalise, emit and drop scene rows ``[base, upto)``, at most one band at a time."""
        while self._base < upto:
            count = min(upto - self._base, self.capacity)
            wsum = self._wsum[:count]
            valid = wsum > 0
            # One new array, divided in place only where there is weight: no full-size temporary,
            # and no 0/0 (slow, ~10x), which nodata rows would be.
            probs = np.full((self.n_prompts, count, wsum.shape[1]), np.nan, np.float32)
            np.divide(self._acc[:, :count], wsum, out=probs, where=valid)
            self._emit(self._base, probs, valid)
            keep = self.capacity - count
            # Shift the still-open rows to the top of the band and clear the freed tail.
            self._acc[:, :keep] = self._acc[:, count:]
            self._wsum[:keep] = self._wsum[count:]
            self._acc[:, keep:] = 0
            self._wsum[keep:] = 0
            self._base += count
            logger.debug("emitted rows %d-%d", self._base - count, self._base)
