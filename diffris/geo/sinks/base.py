"""The sink contract: rows in order, buffered into block-aligned slabs, published atomically.

A sink receives stitched rows top to bottom in bands of any height, copies them into a buffer one
block tall (``spec.block_size`` rows x full width x prompts) and hands each full buffer to its
format as one block-aligned slab, so every GeoTIFF tile and Zarr chunk is written exactly once.
Memory is one slab: prompts x block x width values, never the whole raster.

Lifecycle::

    with open_sink("buildings.tif", spec) as sink:   # checks, creates the temporary output
        for row_off, block in stitched_rows:
            sink.write_rows(row_off, block)
    # a clean exit commits (every row must have been written); an exception aborts

``commit()`` and ``abort()`` may also be called explicitly; both are idempotent once done.
A sink is not thread-safe: feed it from one thread at a time (e.g. one background writer).
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import numpy as np

from diffris.geo.sinks.publish import check_output, publish, remove_path, reserve_partial
from diffris.geo.sinks.spec import OutputFormat, OutputSpec
from diffris.geo.sinks.write_errors import write_error

__all__ = ["Sink"]

logger = logging.getLogger(__name__)


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


class Sink(ABC):
    """Base of the GeoTIFF, COG and Zarr sinks.

    Args:
        path: the output file or store.
        spec: its size, georeferencing, prompts and encoding.
        overwrite: replace an existing output when committing.
    """

    format: ClassVar[OutputFormat]

    def __init__(self, path: str | Path, spec: OutputSpec, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.spec = spec
        self.overwrite = overwrite
        self._state = _State.NEW
        self._partial: Path | None = None
        self._next_row = 0
        self._slab: np.ndarray | None = None
        self._slab_off = 0
        self._slab_rows = 0

    # --- public API ------------------------------------------------------------------------------

    @property
    def rows_written(self) -> int:
        """Rows received so far (they may still sit in the buffer)."""
        return self._next_row

    @property
    def partial(self) -> Path | None:
        """The temporary output while open, else None."""
        return self._partial if self._state is _State.OPEN else None

    def open(self) -> Self:
        """Check the output and create the temporary one (``__enter__`` calls this)."""
        if self._state is not _State.NEW:
            raise RuntimeError(f"sink for {self.path} is {self._state.value}; open it once")
        check_output(self.path, self.overwrite)
        self._partial = reserve_partial(self.path, folder=self.format is OutputFormat.ZARR)
        try:
            self._create(self._partial)
        except BaseException as err:
            refused = write_error(err, self.path, self._partial, 0)
            self._discard()
            remove_path(self._partial)
            self._state = _State.ABORTED
            if refused is not None:
                raise refused from err
            raise
        self._state = _State.OPEN
        shape = (self.spec.count, self.spec.block_size, self.spec.width)
        self._slab = np.empty(shape, dtype=self.spec.numpy_dtype)
        logger.debug("writing %s via %s", self.path, self._partial)
        return self

    def write_rows(self, row_off: int, block: np.ndarray) -> None:
        """Append the next rows.

        Args:
            row_off: index of the block's first row; must be the row after the last one written.
            block: (P, rows, width) values already encoded in the output dtype
                (see :meth:`OutputSpec.encode`); any number of rows.

        Raises:
            ValueError: rows out of order, past the end, or of the wrong shape or dtype.
        """
        self._require_open()
        spec = self.spec
        if row_off != self._next_row:
            raise ValueError(
                f"rows must arrive in order: expected row {self._next_row}, got {row_off}"
            )
        if block.ndim != 3 or block.shape[0] != spec.count or block.shape[2] != spec.width:
            raise ValueError(
                f"expected a ({spec.count}, rows, {spec.width}) block, got {tuple(block.shape)}"
            )
        if block.dtype != spec.numpy_dtype:
            raise ValueError(f"expected {spec.numpy_dtype} values, got {block.dtype}; encode first")
        rows = block.shape[1]
        if row_off + rows > spec.height:
            raise ValueError(f"rows {row_off}..{row_off + rows} run past the height {spec.height}")
        assert self._slab is not None  # set by open()
        done = 0
        while done < rows:
            take = min(rows - done, spec.block_size - self._slab_rows)
            self._slab[:, self._slab_rows : self._slab_rows + take] = block[:, done : done + take]
            self._slab_rows += take
            done += take
            if (
                self._slab_rows == spec.block_size
                or self._slab_off + self._slab_rows == spec.height
            ):
                self._flush()
        self._next_row += rows

    def commit(self) -> None:
        """Finish the output and rename it into place.

        Raises:
            RuntimeError: not every row was written (the temporary output is removed).
            OutputExistsError: the output appeared meanwhile and ``overwrite`` is False.
        """
        if self._state is _State.COMMITTED:
            return
        self._require_open()
        if self._next_row != self.spec.height:
            self.abort()
            raise RuntimeError(
                f"{self.path} is incomplete: {self._next_row} of {self.spec.height} rows written; "
                "nothing was published"
            )
        assert self._partial is not None
        try:
            self._finish(self._partial)
            publish(self._partial, self.path, overwrite=self.overwrite)
        except BaseException as err:
            refused = write_error(err, self.path, self._partial, self._slab_bytes())
            self.abort()
            if refused is not None:
                raise refused from err
            raise
        self._state = _State.COMMITTED
        self._slab = None

    def abort(self) -> None:
        """Drop the temporary output; the output path is left as it was."""
        if self._state is not _State.OPEN:
            if self._state is _State.NEW:
                self._state = _State.ABORTED
            return
        self._state = _State.ABORTED
        self._slab = None
        try:
            self._discard()
        finally:
            if self._partial is not None:
                remove_path(self._partial)
        logger.info("aborted %s; nothing was published", self.path)

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state is _State.OPEN:
            self.commit()

    # --- format hooks ----------------------------------------------------------------------------

    @abstractmethod
    def _create(self, partial: Path) -> None:
        """Create the empty output at ``partial``."""

    @abstractmethod
    def _write_slab(self, row_off: int, slab: np.ndarray) -> None:
        """Write (P, rows, width) at ``row_off``; ``row_off`` is a multiple of the block size."""

    @abstractmethod
    def _finish(self, partial: Path) -> None:
        """Complete ``partial`` (close files, build overviews, consolidate metadata)."""

    @abstractmethod
    def _discard(self) -> None:
        """Release resources and delete temporary files other than ``partial``; never raises."""

    # --- internals -------------------------------------------------------------------------------

    def _flush(self) -> None:
        assert self._slab is not None
        try:
            self._write_slab(self._slab_off, self._slab[:, : self._slab_rows])
        except OSError as err:  # checked now, while the temporary output still holds its space
            refused = write_error(err, self.path, self._partial, self._slab_bytes())
            if refused is not None:
                raise refused from err
            raise
        self._slab_off += self._slab_rows
        self._slab_rows = 0

    def _slab_bytes(self) -> int:
        spec = self.spec
        return spec.count * spec.block_size * spec.width * spec.numpy_dtype.itemsize

    def _require_open(self) -> None:
        if self._state is not _State.OPEN:
            raise RuntimeError(
                f"sink for {self.path} is {self._state.value}; use it inside 'with open_sink(...)'"
            )
