"""The feature cache a predictor consults around its image encoding (``--feature-cache DIR``).

A cache folder holds one entry per (scene, tile grid, image encoder) (:mod:`.keys`), each a Zarr
group with one chunk per tile (:mod:`.store`); the folder stays under its size bound by evicting
least recently used entries (:mod:`.eviction`). A later run with new prompts on the same scenes
reads the features instead of encoding the tiles again.

Features are stored in float16 by default. A run with a cache always decodes from the features
as stored, whether it just computed them or read them, so a run that fills the cache and one
that reads it give bit-identical outputs; with ``float32`` these are also bit-identical to a run
without a cache. The cache never fails a run: an unreadable tile is recomputed, and a cache that
cannot be written is used no further for that scene, with a warning.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffris.config import Config
from diffris.errors import InputError, OutputNotWritableError
from diffris.inference.feature_cache.eviction import TOUCH_SECONDS, entry_size, evict, touch
from diffris.inference.feature_cache.keys import EntryKey, entry_key, model_key, pixel_digest
from diffris.inference.feature_cache.store import EntryStore, StoredTile

if TYPE_CHECKING:
    import numpy as np
    import torch

    from diffris.geo.grid import Grid, Tile
    from diffris.geo.scene import Scene
    from diffris.models.interface import ImageFeatures, ReferringModel

log = logging.getLogger(__name__)

#: ``--feature-cache-size`` when not given: 20 GiB.
DEFAULT_MAX_BYTES = 20 * 2**30
#: The file that marks a folder as a diffris feature cache (eviction deletes only in such).
CACHE_MARKER = "diffris-feature-cache.json"
CACHE_FORMAT = 1


class CacheDtype(enum.Enum):
    """How floating features are stored (integer parts are stored exactly)."""

    #: Half the bytes; probabilities differ from an uncached run by float16 rounding, up to
    #: ~1e-2 (benchmarks/feature_cache.py measures it).
    FLOAT16 = "float16"
    #: Outputs bit-identical to a run without the cache.
    FLOAT32 = "float32"


@dataclass(frozen=True)
class FeatureCacheOptions(Config):
    """Where image features are kept between runs, how many bytes, in which dtype.

    Attributes:
        folder: the cache folder (created if missing).
        max_bytes: the size bound; least recently used entries are evicted past it.
        dtype: the stored dtype of floating features.
    """

    folder: str
    max_bytes: int = DEFAULT_MAX_BYTES
    dtype: CacheDtype = CacheDtype.FLOAT16

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise InputError(
                f"--feature-cache-size {self.max_bytes} must be positive; use e.g. 20G"
            )


def prepare_cache_folder(folder: str | os.PathLike[str]) -> Path:
    """Create (or recognise) a cache folder; returns its absolute path.

    Raises:
        InputError: ``folder`` is a file, or a non-empty folder that is not a feature cache
            (eviction deletes inside it, so it must hold nothing else).
        OutputNotWritableError: it cannot be created or written to.
    """
    root = Path(folder).expanduser().absolute()
    marker = root / CACHE_MARKER
    if root.exists() and not root.is_dir():
        raise InputError(f"--feature-cache {folder} is a file; give a folder, e.g. features/")
    if root.is_dir() and not marker.exists() and any(root.iterdir()):
        raise InputError(
            f"--feature-cache {folder} holds other files and is not a diffris feature cache; "
            "give an empty or new folder, e.g. features/"
        )
    try:
        for sub in ("entries", "trash"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            marker.write_text(json.dumps({"format": CACHE_FORMAT}))
    except OSError as error:
        raise OutputNotWritableError(
            f"--feature-cache {folder} cannot be written ({error.strerror}); give a writable folder"
        ) from error
    return root


class FeatureCache:
    """A predictor's view of the cache: its folder, bound and the key of its image encoder.

    Args:
        options: folder, bound and dtype.
        model: the model whose image features are kept (its identity is part of every key).
        precision: autocast precision of the encoding (``fp32``, ``bf16``, ``fp16``).
        device: where the encoding runs.
    """

    def __init__(
        self, options: FeatureCacheOptions, model: ReferringModel, *, precision: str, device: Any
    ) -> None:
        import torch

        self.options = options
        self.root = prepare_cache_folder(options.folder)
        self.device = device
        self.storage_dtype = getattr(torch, options.dtype.value)
        self.model_fields = model_key(
            model,
            precision=precision,
            device_type=torch.device(device).type,
            dtype=options.dtype.value,
        )

    @contextlib.contextmanager
    def open_scene(self, scene: Scene, grid: Grid) -> Iterator[SceneFeatures]:
        """The features of ``scene`` on ``grid``, for the duration of its run."""
        features = SceneFeatures(self, entry_key(scene, grid, self.model_fields), grid)
        try:
            yield features
        finally:
            features.close()


class SceneFeatures:
    """One scene's entry while a run works on it: lookups, writes, the size bound."""

    def __init__(self, cache: FeatureCache, key: EntryKey, grid: Grid) -> None:
        self.cache = cache
        self.key = key
        self.folder = cache.root / "entries" / key.name
        self.store = EntryStore(self.folder, (grid.n_rows, grid.n_cols))
        self.hits = self.misses = 0
        self._writable = True
        self._described = False  # entry.json written by this run
        self._touched = 0.0
        self._evict()
        self._size = entry_size(self.folder)  # what an earlier, interrupted run left
        self._since_evict = 0

    def lookup(self, tiles: Sequence[Tile], frames: np.ndarray) -> BatchFeatures:
        """The cache's answer for one batch: what :meth:`ModelPredictor.predict` asks for."""
        return BatchFeatures(self, tiles, frames)

    def close(self) -> None:
        if self.hits or self.misses:
            log.info(
                "feature cache %s: %d tiles read, %d encoded",
                self.key.name,
                self.hits,
                self.misses,
            )
        if self.folder.exists():
            entry_size(self.folder, remember=True)
        self._evict()

    # -- used by BatchFeatures ------------------------------------------------------------------

    def read(self, tile: Tile, pixels: str) -> StoredTile | None:
        self._mark_used()
        return self.store.get(tile.row, tile.col, pixels)

    def write(self, tile: Tile, pixels: str, stored: StoredTile) -> None:
        if not self._writable:
            return
        bound = self.cache.options.max_bytes
        if self._size >= bound:
            log.warning(
                "feature cache: %s needs more than --feature-cache-size (%.1f GiB); its "
                "further tiles are not kept",
                self.key.name,
                bound / 2**30,
            )
            self._writable = False
            return
        try:
            if not self._described:
                self.store.write_fields(self.key.fields)
                self._described = True
            written = self.store.put(tile.row, tile.col, pixels, stored)
        except Exception as error:  # a full disk must not fail the run the cache speeds up
            log.warning("feature cache: cannot write to %s (%s); not kept", self.folder, error)
            self._writable = False
            return
        self._size += written
        self._since_evict += written
        if self._since_evict > bound // 16:
            self._evict()

    def _mark_used(self) -> None:
        now = time.monotonic()
        if now - self._touched > TOUCH_SECONDS:
            with contextlib.suppress(OSError):
                touch(self.folder)
            self._touched = now

    def _evict(self) -> None:
        self._mark_used()
        self._since_evict = 0
        root = self.cache.root
        try:
            evict(
                root / "entries",
                root / "trash",
                self.cache.options.max_bytes,
                keep=frozenset({self.key.name}),
            )
        except OSError as error:
            log.warning("feature cache: eviction in %s failed: %s", root, error)


class BatchFeatures:
    """A batch's image features: read where stored, encoded (and stored) where not."""

    def __init__(self, scene: SceneFeatures, tiles: Sequence[Tile], frames: np.ndarray) -> None:
        self.scene = scene
        self.tiles = list(tiles)
        self.frames = frames

    def features(self, encode: Callable[[list[int]], ImageFeatures]) -> ImageFeatures:
        """Features of every tile of the batch, their floating parts on the cache's device.

        Args:
            encode: the predictor's image encoding of some rows of the batch (their indices).

        Returns:
            What encoding every row would return, each tensor rounded through the cache dtype.
        """
        import torch

        digests = [pixel_digest(frame) for frame in self.frames]
        rows: list[list[torch.Tensor] | None] = []
        is_tuple = False
        for tile, digest in zip(self.tiles, digests, strict=True):
            stored = self.scene.read(tile, digest)
            rows.append(None if stored is None else _restore(stored))
            is_tuple = is_tuple or bool(stored and stored.is_tuple)
        missing = [i for i, row in enumerate(rows) if row is None]
        self.scene.hits += len(rows) - len(missing)
        self.scene.misses += len(missing)
        if missing:
            encoded = encode(missing)
            is_tuple = isinstance(encoded, tuple)
            parts = list(encoded) if is_tuple else [encoded]
            for position, i in enumerate(missing):
                stored = _to_storage([p[position] for p in parts], self.scene.cache, is_tuple)
                rows[i] = _restore(stored)  # decode from what is kept, as a later run will
                self.scene.write(self.tiles[i], digests[i], stored)
        device = self.scene.cache.device
        stacked = [
            torch.stack([row[k] for row in rows if row is not None])
            for k in range(len(rows[0] or []))
        ]
        # integer parts (RSRefSeg's input size) stay on the host, as the encoder returns them:
        # reading them on the device would cost a host sync per decode
        stacked = [part.to(device) if part.is_floating_point() else part for part in stacked]
        return tuple(stacked) if is_tuple else stacked[0]


def _to_storage(parts: list[torch.Tensor], cache: FeatureCache, is_tuple: bool) -> StoredTile:
    """One tile's tensors as stored: floating ones in the cache dtype, on the CPU."""
    arrays, dtypes = [], []
    for part in parts:
        kept = part.detach().to(cache.storage_dtype) if part.is_floating_point() else part
        arrays.append(kept.to("cpu").contiguous().numpy())
        dtypes.append(str(part.dtype).removeprefix("torch."))
    return StoredTile(arrays, dtypes, is_tuple)


def _restore(stored: StoredTile) -> list[torch.Tensor]:
    """The tensors of a stored tile, in the dtypes the encoder returned (on the CPU)."""
    import torch

    return [
        torch.from_numpy(array if array.flags.writeable else array.copy()).to(getattr(torch, dtype))
        for array, dtype in zip(stored.arrays, stored.torch_dtypes, strict=True)
    ]


def scene_features(predictor: object, scene: Scene, grid: Grid) -> Any:
    """A context giving the :class:`SceneFeatures` of ``scene``, or None without a cache.

    Any predictor with a ``feature_cache`` attribute (:class:`~diffris.inference.predictor.
    ModelPredictor`) takes part; others (test fakes) run as before.
    """
    cache = getattr(predictor, "feature_cache", None)
    return cache.open_scene(scene, grid) if cache is not None else contextlib.nullcontext()
