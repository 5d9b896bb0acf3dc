"""One scene end to end: Scene → Grid → Batches → Predictor → Stitcher → Sink.

Reading (a background thread), the model (this thread) and encoding plus compressed writing
(another background thread) overlap, so a scene costs little more than its model time. Only the
band of rows still open is in memory: memory grows with the scene's width, never its area.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import resource
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine

from diffris import __version__
from diffris.config import Config
from diffris.data.prompts import Prompt
from diffris.errors import InputError
from diffris.geo.gdal_cache import gdal_cache_size
from diffris.geo.grid import Grid
from diffris.geo.scene import Scene
from diffris.geo.sinks import open_sink
from diffris.geo.sinks.publish import check_output
from diffris.geo.sinks.spec import (
    OutputDtype,
    OutputFormat,
    OutputSpec,
    OutputType,
    parse_creation_options,
    shift_gcps,
)
from diffris.geo.stitch import Stitcher
from diffris.geo.vector.options import VectorFormat, VectorOptions
from diffris.inference.batches import prefetch_batches
from diffris.inference.feature_cache import scene_features
from diffris.inference.heap import trim_heap

if TYPE_CHECKING:  # torch only when a model runs: preflight errors answer in a fraction of a second
    from diffris.inference.predictor import TilePredictor

log = logging.getLogger(__name__)

#: ``progress(tiles_done, tiles_total)``, called after every batch (skipped tiles count as done).
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class SegmentOptions(Config):
    """How a scene is tiled, read and written (the flags of ``diffris segment``).

    Attributes:
        tile: window size in pixels, a multiple of 64.
        overlap: pixels shared by neighbouring windows, blended with a raised cosine.
        batch_size: tiles per model batch.
        threshold: probability at or above which a pixel is in a mask (prompts may override).
        output_type: binary masks or probabilities.
        dtype: stored type for probabilities (masks are uint8).
        format: output format; None picks it from the extension.
        bands: 1-based band numbers (R, G, B) or one grey band; None decides from the file.
        nodata: an extra nodata value of the input.
        stretch: a manual (min, max) stretch to 8 bits; None uses scene percentiles.
        percentiles: (low, high) percentiles of the automatic stretch.
        creation_options: ``KEY=VALUE`` format options (``--co``).
    """

    tile: int = 512
    overlap: int = 64
    batch_size: int = 4
    threshold: float = 0.5
    output_type: OutputType = OutputType.MASK
    dtype: OutputDtype | None = None
    format: OutputFormat | None = None
    bands: tuple[int, ...] | None = None
    nodata: float | None = None
    stretch: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (2.0, 98.0)
    creation_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Bounds first: a window of 1048576 px would ask for terabytes before the grid's own
        # checks (multiple of 64, overlap) could speak.
        if self.tile < 1:
            raise InputError(f"--tile {self.tile} must be positive; use e.g. 512")
        if self.tile > MAX_TILE:
            raise InputError(
                f"--tile {self.tile} is more than {MAX_TILE} px, the largest window diffris "
                "runs; use e.g. 512 or 1024"
            )
        if self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size} must be positive; use e.g. 4")


#: The largest window side, in pixels (one 8192² RGB tile is already 0.8 GB as float32).
MAX_TILE = 8192


@dataclass(frozen=True)
class VectorTarget:
    """A vector output of a scene: where, in which format, with which polygon options.

    Attributes:
        path: the vector file (.gpkg, .parquet, .geojson, .fgb).
        options: minimum area, simplification, holes.
        format: overrides the format implied by the extension.
    """

    path: Path
    options: VectorOptions = VectorOptions()
    format: VectorFormat | None = None


@dataclass(frozen=True)
class SegmentResult:
    """What one scene cost and produced (``output`` is the vector file when no raster is)."""

    scene: str
    output: str
    width: int
    height: int
    tiles: int
    skipped_tiles: int
    seconds: float
    peak_memory_mib: float
    vector: str | None = None
    polygons: int | None = None
    #: GDAL's block cache during the run (``--gdal-cache``), MiB
    gdal_cache_mib: float | None = None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def open_scene(path: str | Path, options: SegmentOptions) -> Scene:
    """Open ``path`` with the band, nodata and stretch choices of ``options``."""
    return Scene.open(
        path,
        bands=options.bands,
        nodata=options.nodata,
        stretch=options.stretch,
        percentiles=options.percentiles,
    )


def output_tags(
    scene: Scene, prompts: Sequence[Prompt], options: SegmentOptions, model_id: str
) -> dict[str, str]:
    """Metadata every output carries: model, thresholds, tiling, stretch, version."""
    thresholds = [p.threshold if p.threshold is not None else options.threshold for p in prompts]
    return {
        "diffris_version": __version__,
        "model": model_id,
        "source": Path(scene.path).name,
        "prompt_ids": ",".join(p.id for p in prompts),
        "thresholds": ",".join(f"{t:g}" for t in thresholds),
        "output_type": options.output_type.value,
        "tile": str(options.tile),
        "overlap": str(options.overlap),
        **scene.stretch.to_tags(),
    }


def output_spec(
    scene: Scene,
    prompts: Sequence[Prompt],
    options: SegmentOptions,
    *,
    model_id: str,
    rows: tuple[int, int] | None = None,
    extra_tags: Mapping[str, str] | None = None,
    creation_options: Mapping[str, str] | None = None,
) -> OutputSpec:
    """The output a scene's run writes: its size, georeferencing, bands, encoding and tags.

    Raises:
        InputError: an option the output cannot take (threshold, dtype, ``--co``).
    """
    start, stop = rows or (0, scene.height)
    if creation_options is None:
        creation_options = parse_creation_options(options.creation_options)
    # GCP-only scenes keep their GCPs (shifted to the part's rows), with no geotransform.
    gcps = shift_gcps(scene.gcps, start) if scene.gcps is not None else None
    transform = (
        scene.transform @ Affine.translation(0, start) if gcps is None else Affine.identity()
    )
    return OutputSpec(
        width=scene.width,
        height=stop - start,
        crs=scene.crs,
        transform=transform,
        gcps=gcps,
        prompts=list(prompts),
        output_type=options.output_type,
        dtype=options.dtype,
        threshold=options.threshold,
        block_size=options.tile,
        tags={**output_tags(scene, prompts, options, model_id), **(extra_tags or {})},
        creation_options=creation_options,
    )


def check_scene(
    scene_path: str | Path,
    output: str | Path | None,
    prompts: Sequence[Prompt],
    options: SegmentOptions,
    *,
    overwrite: bool = False,
    vector: VectorTarget | None = None,
) -> Grid:
    """Check everything :func:`segment_scene` checks before its first tile, writing nothing:
    the scene opens with these options, the output may be written, its format follows from
    the name or ``options.format``, the grid takes the tile and overlap, and the output accepts
    the threshold, dtype and ``--co``.

    The same holds for the ``vector`` output (its format, the scene's georeferencing,
    ``--min-area``'s unit).

    Returns:
        The scene's grid.

    Raises:
        DiffrisError: the first problem found.
    """
    from diffris.geo.vector.sink import check_vector_output

    _check_targets(output, vector)
    if output is not None:
        check_output(output, overwrite)
    with open_scene(scene_path, options) as scene:
        grid = Grid(scene.width, scene.height, tile=options.tile, overlap=options.overlap)
        spec = output_spec(scene, prompts, options, model_id="preflight")
        if output is not None:
            open_sink(output, spec, format=options.format, overwrite=overwrite)  # opens nothing
        if vector is not None:
            check_vector_output(
                vector.path, spec, vector.options, format=vector.format, overwrite=overwrite
            )
    return grid


def _check_targets(output: str | Path | None, vector: VectorTarget | None) -> None:
    if output is None and vector is None:
        raise InputError("nothing to write: give a raster output, a vector output or both")
    if (
        output is not None
        and vector is not None
        and Path(output).resolve() == Path(vector.path).resolve()
    ):
        raise InputError(
            f"--vector {vector.path} is also the raster output; give each its own name"
        )


def _peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB: the peak of this process so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _BackgroundWriter:
    """Encodes and writes finished rows on its own thread (GDAL compresses without the GIL)."""

    def __init__(self, write: Callable[[int, np.ndarray, np.ndarray], None]) -> None:
        self._write = write
        self._queue: queue.Queue[tuple[int, np.ndarray, np.ndarray] | None] = queue.Queue()
        # One band at the writer: the next waits with its maker until this one is written.
        # The model, seconds a row, never waits; a mostly-nodata scene outruns the writer and
        # would fill a queue with bands of the scene's width (112 MiB each at 50,000 px).
        self._slot = threading.Semaphore(1)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="diffris-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None and not self._cancelled:
                try:
                    self._write(*item)
                except BaseException as error:
                    self._error = error
            # Once per row of tiles: the band freed, the heap's free pages go back to the
            # system, so RSS does not creep up with the rows (see diffris.inference.heap).
            del item
            trim_heap()
            self._slot.release()

    def submit(self, row_off: int, probs: np.ndarray, valid: np.ndarray) -> None:
        self._raise()
        self._slot.acquire()
        self._queue.put((row_off, probs, valid))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def cancel(self) -> None:
        """Stop without writing what is queued (the output is being aborted anyway)."""
        self._cancelled = True
        self._queue.put(None)
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def _check_rows(rows: tuple[int, int] | None, height: int) -> tuple[int, int]:
    if rows is None:
        return 0, height
    start, stop = rows
    if not 0 <= start < stop <= height:
        raise InputError(f"rows {start}:{stop} are not a range inside the scene's {height} rows")
    return start, stop


def segment_scene(
    scene_path: str | Path,
    output: str | Path | None,
    predictor: TilePredictor,
    prompts: Sequence[Prompt],
    options: SegmentOptions,
    *,
    model_id: str,
    overwrite: bool = False,
    extra_tags: Mapping[str, str] | None = None,
    progress: ProgressFn | None = None,
    rows: tuple[int, int] | None = None,
    vector: VectorTarget | None = None,
) -> SegmentResult:
    """Segment one scene for every prompt and publish the outputs atomically.

    Args:
        scene_path: a raster GDAL can read.
        output: the GeoTIFF/COG file or Zarr store to write; None for polygons only.
        predictor: turns (B, 3, T, T) uint8 tiles into (B, P, T, T) probabilities.
        prompts: one output band per prompt, in this order (``predictor``'s prompts).
        options: tiling, input and output choices.
        model_id: recorded in the output's metadata.
        overwrite: replace an existing output.
        extra_tags: more metadata (the archive runner adds its job key).
        progress: called as tiles complete.
        rows: write only scene rows ``[start, stop)`` (an output of that height, its transform
            shifted down by ``start`` rows). The grid stays anchored at the scene's origin and
            every tile touching those rows is predicted, so the parts of a scene split across
            workers, stacked, equal the whole scene's output pixel for pixel.
        vector: also (or only) write the masks' polygons there, from the same probabilities.

    Raises:
        DiffrisError: bad input, an existing output, an unwritable folder; nothing is left at
            ``output`` when anything fails.
    """
    from diffris.geo.vector.sink import VectorSink

    started = time.perf_counter()
    _check_targets(output, vector)
    if output is not None:
        output = check_output(output, overwrite)
    creation_options = parse_creation_options(options.creation_options)
    with open_scene(scene_path, options) as scene, contextlib.ExitStack() as outputs:
        grid = Grid(scene.width, scene.height, tile=options.tile, overlap=options.overlap)
        start, stop = _check_rows(rows, scene.height)
        grid_rows = grid.rows_touching(start, stop)
        tiles = [tile for r in grid_rows for tile in grid.tiles_in_row(r)]
        spec = output_spec(
            scene,
            prompts,
            options,
            model_id=model_id,
            rows=(start, stop),
            extra_tags=extra_tags,
            creation_options=creation_options,
        )
        done = skipped = 0
        sink = vector_sink = None
        if output is not None:
            sink = outputs.enter_context(
                open_sink(output, spec, format=options.format, overwrite=overwrite)
            )
        if vector is not None:
            vector_sink = outputs.enter_context(
                VectorSink(
                    vector.path,
                    spec,
                    vector.options,
                    model_id=model_id,
                    format=vector.format,
                    overwrite=overwrite,
                )
            )

        def write(row_off: int, probs: np.ndarray, valid: np.ndarray) -> None:
            first, last = max(row_off, start), min(row_off + len(valid), stop)
            if first < last:  # rows outside [start, stop) belong to another part
                block = slice(first - row_off, last - row_off)
                if sink is not None:
                    sink.write_rows(first - start, spec.encode(probs[:, block], valid[block]))
                if vector_sink is not None:  # the same blended probabilities, same thresholds
                    vector_sink.write_rows(first - start, probs[:, block], valid[block])

        # the image features of earlier runs (--feature-cache); None without a cache
        features = outputs.enter_context(scene_features(predictor, scene, grid))
        writer = _BackgroundWriter(write)
        stitcher = Stitcher(grid, len(prompts), writer.submit, grid_rows=grid_rows)
        try:
            for batch in prefetch_batches(scene.reopen, grid, options.batch_size, tiles=tiles):
                skipped += batch.skipped
                if batch.tiles:
                    probs = (
                        predictor.predict(batch.frames)
                        if features is None
                        else predictor.predict(  # type: ignore[call-arg]
                            batch.frames, features.lookup(batch.tiles, batch.frames)
                        )
                    )
                    for tile, tile_probs, valid in zip(
                        batch.tiles, probs, batch.valid, strict=True
                    ):
                        stitcher.add(tile, tile_probs, valid)
                done += len(batch.tiles) + batch.skipped
                if progress is not None:
                    progress(done, len(tiles))
            stitcher.close()
        except BaseException:
            writer.cancel()  # Ctrl-C, SIGTERM, a read error: drop the queued rows at once
            raise
        writer.finish()
        if sink is not None:
            sink.commit()
        if vector_sink is not None:
            vector_sink.commit()
    result = SegmentResult(
        scene=str(scene_path),
        output=str(output if output is not None else vector.path),  # type: ignore[union-attr]
        width=grid.width,
        height=stop - start,
        tiles=len(tiles),
        skipped_tiles=skipped,
        seconds=round(time.perf_counter() - started, 3),
        peak_memory_mib=round(_peak_rss_mib(), 1),
        vector=str(vector.path) if vector is not None else None,
        polygons=vector_sink.features if vector_sink is not None else None,
        gdal_cache_mib=round(gdal_cache_size() / 2**20, 1),
    )
    log.info(
        "%s: %d tiles (%d skipped, all nodata) in %.1f s -> %s",
        scene_path,
        result.tiles,
        skipped,
        result.seconds,
        " and ".join(str(o) for o in (output, vector and vector.path) if o),
    )
    return result
