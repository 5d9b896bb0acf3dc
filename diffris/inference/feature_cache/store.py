"""One entry of the feature cache on disk: a Zarr group of per-tile chunks, and tile markers.

Layout of an entry folder::

    entry.json            what the entry's name hashes (keys.entry_key), for inspection
    features.zarr/        a Zarr group; array "i" is the i-th tensor of the image features,
                          shape (grid rows, grid cols, *tensor shape), one chunk per tile
                          (zstd), floating tensors in the cache's dtype
    tiles/R_C.json        the marker of tile (R, C), written last (temporary name, then rename):
                          digests of its model input and of each stored array, and the torch
                          dtype and layout to rebuild the features

A tile is a hit only when its marker exists, names the same model input, and every array read
back has the recorded digest. A kill between the chunks and the marker leaves no marker; a torn
or half-replaced chunk fails its digest; either way the tile is recomputed and rewritten. Chunk
files are replaced atomically by Zarr's local store (≥ 3.1), so a concurrent reader sees the
old chunk or the new one, and the digests guard older Zarr versions too.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffris.inference.feature_cache.keys import array_digest

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

FEATURES = "features.zarr"
TILES = "tiles"
ENTRY_FIELDS = "entry.json"


@dataclass(frozen=True)
class StoredTile:
    """One tile's features as stored: the arrays, and how to rebuild the torch tensors.

    Attributes:
        arrays: one array per tensor of the features, in the stored dtype.
        torch_dtypes: the dtype of each tensor as the encoder returned it (``float32``).
        is_tuple: whether the features are a tuple of tensors (RSRefSeg) or one tensor.
    """

    arrays: list[np.ndarray]
    torch_dtypes: list[str]
    is_tuple: bool


class EntryStore:
    """Reads and writes the tiles of one entry (one scene, grid and model).

    Args:
        folder: the entry's folder (created on the first write).
        grid_shape: (rows, cols) of the tile grid: the leading shape of every array.
    """

    def __init__(self, folder: Path, grid_shape: tuple[int, int]) -> None:
        self.folder = folder
        self.grid_shape = grid_shape
        self._arrays: dict[int, Any] = {}

    def write_fields(self, fields: dict[str, Any]) -> None:
        """Record what the entry's name stands for (once; a concurrent writer writes the same)."""
        path = self.folder / ENTRY_FIELDS
        if not path.exists():
            _write_atomic(path, json.dumps(fields, indent=1, sort_keys=True).encode())

    def get(self, row: int, col: int, pixels: str) -> StoredTile | None:
        """The tile's stored features, or None when absent, for other pixels, or torn.

        Args:
            row: grid row.
            col: grid column.
            pixels: :func:`~diffris.inference.feature_cache.keys.pixel_digest` of its input.
        """
        try:
            marker = json.loads((self._tiles / f"{row}_{col}.json").read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:  # a torn marker (power loss) is a miss
            log.debug("feature cache: unreadable marker of tile (%d, %d): %s", row, col, error)
            return None
        if marker.get("pixels") != pixels:
            return None
        try:
            arrays = [self._read(i, row, col) for i in range(len(marker["parts"]))]
        except Exception as error:  # an evicted or damaged entry: recompute, never fail the run
            log.debug("feature cache: tile (%d, %d) unreadable: %s", row, col, error)
            return None
        for array, part in zip(arrays, marker["parts"], strict=True):
            if array_digest(array) != part["digest"]:
                log.debug("feature cache: tile (%d, %d) is torn; recomputing it", row, col)
                return None
        return StoredTile(arrays, [p["torch_dtype"] for p in marker["parts"]], marker["tuple"])

    def put(self, row: int, col: int, pixels: str, tile: StoredTile) -> int:
        """Store a tile: its chunks first, then its marker. Returns the bytes now on disk."""
        written = 0
        for index, array in enumerate(tile.arrays):
            target = self._array(index, like=array)
            target[row, col] = array
            written += _size(self.folder / FEATURES / str(index) / _chunk_key(target, row, col))
        marker = {
            "pixels": pixels,
            "tuple": tile.is_tuple,
            "parts": [
                {"digest": array_digest(a), "torch_dtype": d}
                for a, d in zip(tile.arrays, tile.torch_dtypes, strict=True)
            ],
        }
        data = json.dumps(marker).encode()
        _write_atomic(self._tiles / f"{row}_{col}.json", data)
        return written + len(data)

    def _read(self, index: int, row: int, col: int) -> np.ndarray:
        """Chunk (row, col) of array ``index``: the file read and unzstd-ed directly, which costs
        a third of Zarr's own read (its per-call overhead); Zarr reads other codec chains."""
        import numpy as np

        array = self._array(index)
        if not _is_plain_zstd(array):
            return np.asarray(array[row, col])
        data = (self.folder / FEATURES / str(index) / _chunk_key(array, row, col)).read_bytes()
        raw = bytearray(_zstd().decode(data))  # writable: torch takes it without a copy
        return np.frombuffer(raw, dtype=array.dtype).reshape(array.chunks[2:])

    @property
    def _tiles(self) -> Path:
        return self.folder / TILES

    def _array(self, index: int, like: np.ndarray | None = None) -> Any:
        """Array ``index`` of the entry, opened once; created (from ``like``) if missing."""
        if index in self._arrays:
            return self._arrays[index]
        import zarr
        from zarr.codecs import ZstdCodec
        from zarr.errors import ContainsArrayError

        root = str(self.folder / FEATURES)
        try:
            array = zarr.open_array(root, path=str(index), mode="r+")
        except FileNotFoundError:
            if like is None:
                raise
            shape = (*self.grid_shape, *like.shape)
            try:
                array = zarr.create_array(
                    root,
                    name=str(index),
                    shape=shape,
                    chunks=(1, 1, *like.shape),
                    dtype=like.dtype,
                    compressors=ZstdCodec(level=1),
                    fill_value=0,
                )
            except ContainsArrayError:  # another process created it first
                array = zarr.open_array(root, path=str(index), mode="r+")
        if like is not None and (array.shape[2:], array.dtype) != (like.shape, like.dtype):
            raise ValueError(f"array {index} holds {array.shape} {array.dtype}, not {like.shape}")
        self._arrays[index] = array
        return array


def _is_plain_zstd(array: Any) -> bool:
    """Whether chunks are little-endian bytes in one zstd frame (what :meth:`_array` creates)."""
    names = [type(codec).__name__ for codec in array.metadata.codecs]
    endian = getattr(array.metadata.codecs[0], "endian", None)
    return names == ["BytesCodec", "ZstdCodec"] and getattr(endian, "value", None) == "little"


def _zstd() -> Any:
    from numcodecs import Zstd

    return Zstd()


def _chunk_key(array: Any, row: int, col: int) -> str:
    return str(array.metadata.encode_chunk_key((row, col, *([0] * (array.ndim - 2)))))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
