"""Where a scene's mask may be valid, found once per scene without reading windows in full.

Skipping a tile of pure nodata used to cost a full read of it (data, masks, stretch). Here a
scene's GDAL mask (``dataset_mask()`` semantics: a pixel is valid when any chosen band's mask
is) is max-pooled into cells of :data:`CELL` px, lazily by bands of rows as tiles ask, so a
tile whose cells are all empty is skipped without touching its data. The map is conservative by
construction: a cell is called empty only after every one of its full-resolution mask pixels
has been seen to be 0; decimated reads and overviews are never trusted to prove emptiness (a
nearest-neighbour overview can miss a single valid pixel). A tile the map cannot rule out is
read in full as before, and skipped if that read finds no valid pixel (NaN, ``--nodata``), so
the tiles skipped, and the output bytes, are exactly those of reading every window.

The full-resolution mask costs a decode of the scene's blocks. For a GeoTIFF whose mask comes
from its own blocks (a nodata value, or an alpha band) most of that is avoided: an empty block
is found once by decoding it, and every later block whose compressed bytes, in every band, are
identical to it (the same bytes decode to the same pixels) is known empty from those few
hundred bytes (a block at the scene's edge vouches only for its part inside the scene; an
absent, sparse block is decoded). Masks kept in a mask band (internal or ``.msk``) and other
formats are decoded in bands of block rows, each pixel once.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np
from rasterio.enums import Interleaving, MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from diffris.geo.read_checks import read_error

__all__ = ["CELL", "Coverage"]

logger = logging.getLogger(__name__)

#: Side in px of the cells the mask is pooled into; divides the default tile (512) and stride
#: (448), so a default grid's tiles cover whole cells.
CELL = 32
#: Bytes of mask decoded per read at most (bounds memory on very wide scenes).
CHUNK_BYTES = 4 << 20
#: Tallest band of rows decoded at once; taller blocks (long strips) are read in parts.
MAX_BAND_ROWS = 1024
#: A block compressed to more than 1/BUSY_RATIO of its raw size is taken as holding data
#: without decoding it (an empty block is constant: a few hundred bytes). Only ever costs time:
#: the tiles over it are read in full, and skipped if that read finds no valid pixel.
BUSY_RATIO = 8
#: Stand-ins in block keys for a missing (sparse) block and a large one.
ABSENT = "absent"
BUSY = "busy"


class Coverage:
    """A conservative map of the cells of a scene that may hold a mask-valid pixel.

    Build it with :meth:`of`; ask :meth:`may_hold_data` for each window. Uses (and does not
    own) an open rasterio dataset, from one thread.

    Attributes:
        decoded_px: pixels whose mask was decoded at full resolution so far.
        known_empty_px: pixels known empty from their blocks' compressed bytes alone.
        busy_px: pixels of blocks too large once compressed to be worth decoding: taken as
            holding data (the tiles over them are read in full, as before).
    """

    def __init__(
        self, dataset: Any, bands: tuple[int, ...], path: str, *, per_dataset: bool
    ) -> None:
        self._dataset = dataset
        self._path = path
        # One mask serves every band when it is per dataset; read it once.
        self._mask_bands = bands[:1] if per_dataset else bands
        self._height, self._width = dataset.height, dataset.width
        block_h, block_w = dataset.block_shapes[bands[0] - 1]
        self._block = (block_h, block_w)
        self._band_rows = _aligned(block_h, MAX_BAND_ROWS)
        self._chunk_cols = _chunk_width(
            block_w, self._width, self._band_rows, len(self._mask_bands)
        )
        self._cells = np.zeros((_ceil(self._height, CELL), _ceil(self._width, CELL)), bool)
        self._done = np.zeros(_ceil(self._height, self._band_rows), bool)
        # Blocks must not straddle bands of rows for their bytes to stand for them.
        aligned = self._band_rows % block_h == 0
        self._blocks = _BlockBytes.of(dataset, bands) if aligned else None
        # Bytes of blocks seen empty -> the (rows, cols) extents over which they were seen.
        self._empty: dict[tuple[object, ...], list[tuple[int, int]]] = {}
        self.decoded_px = 0
        self.known_empty_px = 0
        self.busy_px = 0
        logger.debug(
            "%s: nodata skipping from the pooled mask, %s",
            path,
            "empty blocks known by their bytes" if self._blocks else "decoded in full",
        )

    @classmethod
    def of(cls, dataset: Any, bands: tuple[int, ...], path: str) -> Coverage | None:
        """The coverage of ``bands`` of ``dataset``; None when no pixel can be mask-empty.

        Args:
            dataset: an open rasterio dataset.
            bands: the distinct 1-based bands read (their masks are combined with "any").
            path: the raster's name, for messages.
        """
        flags = [set(dataset.mask_flag_enums[b - 1]) for b in bands]
        if any(MaskFlags.all_valid in f for f in flags):
            return None  # a band without nodata makes every pixel valid
        per_dataset = all(MaskFlags.per_dataset in f for f in flags)
        return cls(dataset, bands, path, per_dataset=per_dataset)

    def may_hold_data(self, window: Window) -> bool:
        """False only when every pixel of ``window`` is nodata in GDAL's mask.

        Args:
            window: integer pixel window inside the scene.
        """
        row0, col0 = int(window.row_off), int(window.col_off)
        row1, col1 = row0 + int(window.height), col0 + int(window.width)
        for band in range(row0 // self._band_rows, _ceil(row1, self._band_rows)):
            if not self._done[band]:
                self._pool_band(band)
                self._done[band] = True
        cells = self._cells[row0 // CELL : _ceil(row1, CELL), col0 // CELL : _ceil(col1, CELL)]
        return bool(cells.any())

    def _pool_band(self, band: int) -> None:
        """Fill the cells of one band of rows."""
        row0 = band * self._band_rows
        rows = min(self._band_rows, self._height - row0)
        if self._blocks is None:
            for col0 in range(0, self._width, self._chunk_cols):
                self._decode(Window(col0, row0, min(self._chunk_cols, self._width - col0), rows))
            return
        block_h = self._block[0]
        for row in range(row0, row0 + rows, block_h):
            height = min(block_h, self._height - row)
            run: list[tuple[tuple[object, ...], int, int]] = []  # blocks to decode together
            for key, col, width in self._blocks.keys(row, height, self._block):
                if BUSY in key:  # taken as holding data, undecoded: the tile read decides
                    self.busy_px += height * width
                    self._decode_run(row, height, run)
                    run = []
                    self._cells[
                        row // CELL : _ceil(row + height, CELL),
                        col // CELL : _ceil(col + width, CELL),
                    ] = True
                    continue
                if self._known_empty(key, height, width):
                    self.known_empty_px += height * width
                    self._decode_run(row, height, run)
                    run = []
                    continue
                run.append((key, col, width))
                if col + width - run[0][1] >= self._chunk_cols:
                    self._decode_run(row, height, run)
                    run = []
            self._decode_run(row, height, run)

    def _known_empty(self, key: tuple[object, ...], height: int, width: int) -> bool:
        """Whether blocks of these bytes were seen empty over at least this extent.

        An edge block seen empty inside the scene says nothing of the pixels a whole block
        with the same bytes would add; a whole block seen empty covers any edge block.
        """
        return any(h >= height and w >= width for h, w in self._empty.get(key, ()))

    def _decode_run(
        self, row: int, height: int, run: list[tuple[tuple[object, ...], int, int]]
    ) -> None:
        """Decode neighbouring blocks of one block row; remember the keys of empty ones."""
        if not run:
            return
        col0 = run[0][1]
        mask = self._decode(Window(col0, row, run[-1][1] + run[-1][2] - col0, height))
        for key, col, width in run:
            if not mask[:, col - col0 : col - col0 + width].max():
                self._empty.setdefault(key, []).append((height, width))

    def _decode(self, window: Window) -> np.ndarray:
        """Read ``window``'s mask at full resolution and OR it into the cells."""
        mask = self._read_mask(window)
        self.decoded_px += mask.size
        _pool_into(self._cells, mask, int(window.row_off), int(window.col_off))
        return mask

    def _read_mask(self, window: Window) -> np.ndarray:
        """(h, w) uint8, nonzero where any chosen band's GDAL mask is valid."""
        try:
            masks = self._dataset.read_masks(self._mask_bands, window=window)
        except RasterioIOError as err:
            where = f"the mask of rows {window.row_off}-{window.row_off + window.height}"
            raise read_error(self._path, where, err) from err
        return masks[0] if len(masks) == 1 else masks.max(axis=0)  # uint8 max: SIMD, unlike any


class _BlockBytes:
    """The compressed bytes of a GeoTIFF's blocks, read straight from the file.

    Only for a local GeoTIFF whose mask is computed from its bands' own blocks (a nodata value,
    or an alpha band): then blocks with identical bytes in every band have identical masks.
    """

    def __init__(self, dataset: Any, file: str) -> None:
        self._dataset = dataset
        self._file = file
        # A pixel-interleaved block holds every band (alpha included): band 1's bytes say all.
        pixel = dataset.interleaving is Interleaving.pixel
        self._bands = range(1, 2 if pixel else dataset.count + 1)
        block_h, block_w = dataset.block_shapes[0]
        samples = dataset.count if pixel else 1
        raw = block_h * block_w * samples * np.dtype(dataset.dtypes[0]).itemsize
        self._busy_bytes = raw // BUSY_RATIO

    @classmethod
    def of(cls, dataset: Any, bands: tuple[int, ...]) -> _BlockBytes | None:
        """Byte access for ``bands`` of ``dataset``, or None where identical bytes prove nothing."""
        if dataset.driver != "GTiff" or not os.path.isfile(dataset.name):
            return None
        flags = [set(dataset.mask_flag_enums[b - 1]) for b in bands]
        if not all(f == {MaskFlags.nodata} or MaskFlags.alpha in f for f in flags):
            return None  # a mask band (internal or .msk) is not in the bands' bytes
        if len(set(dataset.block_shapes)) != 1 or len(set(dataset.dtypes)) != 1:
            return None
        if dataset.compression is None:
            return None  # uncompressed: decoding costs no more than comparing the bytes
        return cls(dataset, dataset.name)

    def keys(
        self, row: int, height: int, block: tuple[int, int]
    ) -> list[tuple[tuple[object, ...], int, int]]:
        """``(key, col, width)`` for each block of the block row starting at scene ``row``.

        The key holds every band's compressed bytes, :data:`ABSENT` for a block missing from
        a sparse file (GDAL fills each such block of a band alike: nodata, or 0), or
        :data:`BUSY` for one too large to be worth comparing.
        """
        block_h, block_w = block
        found = []
        with open(self._file, "rb") as stream:
            for col in range(0, self._dataset.width, block_w):
                width = min(block_w, self._dataset.width - col)
                where = (col // block_w, row // block_h)
                key = tuple(self._block(stream, band, where) for band in self._bands)
                found.append((key, col, width))
        return found

    def _block(self, stream: Any, band: int, where: tuple[int, int]) -> object:
        """One band's compressed bytes at block (column, row), or ABSENT, or BUSY."""
        name = f"{where[0]}_{where[1]}"
        size = int(self._dataset.get_tag_item(f"BLOCK_SIZE_{name}", "TIFF", bidx=band) or 0)
        offset = int(self._dataset.get_tag_item(f"BLOCK_OFFSET_{name}", "TIFF", bidx=band) or 0)
        if not size or not offset:
            return ABSENT
        if size > self._busy_bytes:
            return BUSY
        stream.seek(offset)
        return stream.read(size)


def _pool_into(cells: np.ndarray, mask: np.ndarray, row0: int, col0: int) -> None:
    """OR a (h, w) uint8 mask read at scene (``row0``, ``col0``) into the :data:`CELL` cells."""
    if not mask.max():
        return  # the common case in a sparse scene
    height, width = mask.shape
    top, left = row0 % CELL, col0 % CELL
    rows, cols = _ceil(top + height, CELL), _ceil(left + width, CELL)
    if (top, left, rows * CELL, cols * CELL) != (0, 0, height, width):
        padded = np.zeros((rows * CELL, cols * CELL), mask.dtype)
        padded[top : top + height, left : left + width] = mask
        mask = padded
    # Rows within a cell first: that order keeps numpy's reductions contiguous (10x faster).
    pooled = mask.reshape(rows, CELL, cols, CELL).max(axis=1).max(axis=2) > 0
    cells[row0 // CELL : row0 // CELL + rows, col0 // CELL : col0 // CELL + cols] |= pooled


def _aligned(block: int, most: int) -> int:
    """Rows per band: a multiple of both the block and the cell, at most about ``most``."""
    common = math.lcm(block, CELL)
    return common if common <= most else _ceil(most, CELL) * CELL


def _chunk_width(block_w: int, width: int, rows: int, bands: int) -> int:
    """Columns per read: whole blocks and cells, about :data:`CHUNK_BYTES` of mask."""
    unit = math.lcm(block_w, CELL) if block_w < width else CELL
    most = max(1, CHUNK_BYTES // max(1, rows * bands * unit))
    return min(width, unit * most)


def _ceil(value: int, step: int) -> int:
    return -(-value // step)
