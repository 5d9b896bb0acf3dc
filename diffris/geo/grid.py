"""Deterministic tiling of a scene into overlapping, model-sized windows.

The grid is anchored at the raster origin and steps by ``stride = tile - overlap``. The last
row and column of windows are snapped to the scene edge, so they end exactly there and overlap
their neighbour by more than ``overlap``; a scene narrower (or shorter) than one tile gets a
single window along that axis, covering the scene and padded to the tile size. Every tile has the
same ``tile x tile`` frame, so tiles batch without reshaping.

Tiles are iterated row-major. That order is what lets the stitcher stream: once every tile of
grid row ``r`` has been seen, scene rows above :meth:`Grid.rows_done_after` ``(r)`` can never be
touched again.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from diffris.errors import InputError

#: Tile sizes must be multiples of this (the UNet's coarsest stride; the same rule as
#: ``diffris.models.preprocessing.SIZE_MULTIPLE``, repeated here so the geo path needs no torch).
SIZE_MULTIPLE = 64

__all__ = ["SIZE_MULTIPLE", "Grid", "PadMode", "Tile", "axis_offsets"]


class PadMode(enum.Enum):
    """How :meth:`Tile.pad` fills the frame beyond the scene edge."""

    #: A constant value (0 for images, False for masks).
    CONSTANT = "constant"
    #: Mirror the valid part (``numpy.pad(mode="symmetric")``), so the model sees plausible
    #: content instead of a black border next to the scene edge.
    REFLECT = "reflect"


@dataclass(frozen=True)
class Tile:
    """One window of the grid.

    Attributes:
        index: position in row-major order, ``row * n_cols + col``.
        row: grid row (0-based).
        col: grid column (0-based).
        window: the part of the frame that lies inside the scene, in scene pixels.
        frame_height: height of the model input in pixels (the grid's tile size).
        frame_width: width of the model input in pixels (the grid's tile size).
        top: the window touches the scene's top edge.
        bottom: the window touches the scene's bottom edge.
        left: the window touches the scene's left edge.
        right: the window touches the scene's right edge.

    The valid part sits at the top-left of the frame; padding (only for scenes smaller than a
    tile along an axis) is at the bottom and right.
    """

    index: int
    row: int
    col: int
    window: Window
    frame_height: int
    frame_width: int
    top: bool
    bottom: bool
    left: bool
    right: bool

    @property
    def row_off(self) -> int:
        """First scene row of the window."""
        return int(self.window.row_off)

    @property
    def col_off(self) -> int:
        """First scene column of the window."""
        return int(self.window.col_off)

    @property
    def height(self) -> int:
        """Rows of the window inside the scene (≤ ``frame_height``)."""
        return int(self.window.height)

    @property
    def width(self) -> int:
        """Columns of the window inside the scene (≤ ``frame_width``)."""
        return int(self.window.width)

    @property
    def pad_bottom(self) -> int:
        """Rows of padding below the valid part of the frame."""
        return self.frame_height - self.height

    @property
    def pad_right(self) -> int:
        """Columns of padding right of the valid part of the frame."""
        return self.frame_width - self.width

    @property
    def padded(self) -> bool:
        """Whether the frame extends beyond the scene."""
        return bool(self.pad_bottom or self.pad_right)

    def pad(
        self, array: np.ndarray, *, mode: PadMode = PadMode.CONSTANT, fill: float = 0
    ) -> np.ndarray:
        """Pad a window-sized array to the frame.

        Args:
            array: (..., height, width) data read for :attr:`window`.
            mode: how to fill the padding; masks should always use ``CONSTANT`` with
                ``fill=False`` so the padding counts as nodata.
            fill: value for ``CONSTANT`` padding.

        Returns:
            (..., frame_height, frame_width), the input itself when no padding is needed.
        """
        if array.shape[-2:] != (self.height, self.width):
            raise ValueError(
                f"tile {self.index}: expected (..., {self.height}, {self.width}), got {array.shape}"
            )
        if not self.padded:
            return array
        widths = [(0, 0)] * (array.ndim - 2) + [(0, self.pad_bottom), (0, self.pad_right)]
        if mode is PadMode.REFLECT:
            return np.pad(array, widths, mode="symmetric")
        return np.pad(array, widths, mode="constant", constant_values=fill)

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The valid part of a frame-sized array: (..., frame_h, frame_w) -> (..., h, w)."""
        if array.shape[-2:] != (self.frame_height, self.frame_width):
            raise ValueError(
                f"tile {self.index}: expected (..., {self.frame_height}, {self.frame_width}), "
                f"got {array.shape}"
            )
        return array[..., : self.height, : self.width]


def axis_offsets(extent: int, tile: int, stride: int) -> tuple[int, ...]:
    """Window starts along one axis: ``0, stride, 2*stride, ...`` with the last snapped.

    Args:
        extent: scene size along the axis in pixels.
        tile: window size in pixels.
        stride: step between window starts in pixels.

    Returns:
        Increasing offsets; the last window ends at ``extent`` (or covers it entirely when
        ``extent <= tile``).
    """
    if extent <= tile:
        return (0,)
    last = extent - tile
    return (*range(0, last, stride), last)


class Grid:
    """Overlapping ``tile x tile`` windows over a ``width x height`` scene.

    Args:
        width: scene width in pixels.
        height: scene height in pixels.
        tile: window size in pixels; a positive multiple of 64 (the model's size rule).
        overlap: pixels shared by neighbouring windows; ``0 <= overlap <= tile / 2``.

    Raises:
        InputError: for a tile or overlap that breaks these rules, or an empty scene.
    """

    def __init__(self, width: int, height: int, *, tile: int = 512, overlap: int = 64) -> None:
        if tile <= 0 or tile % SIZE_MULTIPLE:
            nearest = max(SIZE_MULTIPLE, round(tile / SIZE_MULTIPLE) * SIZE_MULTIPLE)
            raise InputError(
                f"--tile {tile} is not a multiple of {SIZE_MULTIPLE}; use e.g. {nearest}"
            )
        if overlap < 0:
            raise InputError(f"--overlap {overlap} is negative; use 0 or more, e.g. {tile // 8}")
        if 2 * overlap > tile:
            raise InputError(
                f"--overlap {overlap} is more than half of --tile {tile}; "
                f"use at most {tile // 2} (e.g. {tile // 8}) or a larger tile"
            )
        if width <= 0 or height <= 0:
            raise InputError(f"cannot tile an empty scene of {width} x {height} px")
        self.width = width
        self.height = height
        self.tile = tile
        self.overlap = overlap
        self.stride = tile - overlap
        self.row_offsets = axis_offsets(height, tile, self.stride)
        self.col_offsets = axis_offsets(width, tile, self.stride)

    def __repr__(self) -> str:
        return (
            f"Grid(width={self.width}, height={self.height}, tile={self.tile}, "
            f"overlap={self.overlap}) with {self.n_rows} x {self.n_cols} tiles"
        )

    @property
    def n_rows(self) -> int:
        """Number of grid rows."""
        return len(self.row_offsets)

    @property
    def n_cols(self) -> int:
        """Number of grid columns."""
        return len(self.col_offsets)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def __iter__(self) -> Iterator[Tile]:
        """All tiles in row-major order."""
        for row in range(self.n_rows):
            yield from self.tiles_in_row(row)

    def tiles_in_row(self, row: int) -> list[Tile]:
        """The tiles of grid row ``row``, left to right."""
        return [self.tile_at(row, col) for col in range(self.n_cols)]

    def tile_at(self, row: int, col: int) -> Tile:
        """The tile at grid position (``row``, ``col``)."""
        if not (0 <= row < self.n_rows and 0 <= col < self.n_cols):
            raise IndexError(f"tile ({row}, {col}) outside a {self.n_rows} x {self.n_cols} grid")
        row_off, col_off = self.row_offsets[row], self.col_offsets[col]
        height = min(self.tile, self.height - row_off)
        width = min(self.tile, self.width - col_off)
        return Tile(
            index=row * self.n_cols + col,
            row=row,
            col=col,
            window=Window(col_off, row_off, width, height),
            frame_height=self.tile,
            frame_width=self.tile,
            top=row_off == 0,
            bottom=row_off + height == self.height,
            left=col_off == 0,
            right=col_off + width == self.width,
        )

    def tile_by_index(self, index: int) -> Tile:
        """The tile with row-major position ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"tile index {index} outside a grid of {len(self)} tiles")
        return self.tile_at(*divmod(index, self.n_cols))

    def rows_touching(self, start: int, stop: int) -> range:
        """Grid rows whose windows overlap scene rows ``[start, stop)``."""
        touching = [
            row
            for row, offset in enumerate(self.row_offsets)
            if offset < stop and offset + min(self.tile, self.height - offset) > start
        ]
        if not touching:
            raise ValueError(f"rows {start}:{stop} are outside the {self.height}-row scene")
        return range(touching[0], touching[-1] + 1)

    def rows_done_after(self, row: int) -> int:
        """Scene rows ``[0, k)`` that no tile after grid row ``row`` touches; returns ``k``.

        After the last grid row this is the scene height. Offsets increase, so the next grid
        row's start bounds every later one.
        """
        if not 0 <= row < self.n_rows:
            raise IndexError(f"grid row {row} outside 0..{self.n_rows - 1}")
        return self.row_offsets[row + 1] if row + 1 < self.n_rows else self.height
