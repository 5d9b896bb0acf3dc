"""What skipping nodata costs: ms per skipped tile before and after the pooled mask, and the run.

A 20,000 x 4,096 scene that is 99 % nodata (valid rows 4,580-4,780 only: 9 of its 405 tiles
of 512 px, overlap 64, hold data) is written with its nodata given each way GDAL knows. For
each, the tile reader (``prefetch_batches``, no model) runs over the whole grid and over the 9
kept tiles alone; ms per skipped tile = (whole grid - kept tiles) / 396. "Before" is the read
path as it was (commit 57fd17f): every window read in full, nodata zeroed by boolean-index
assignment; "after" is the current one. Then one whole ``segment_scene`` run with the ``tiny``
model, before and after, against the model alone on the 9 tiles; and the reader on a dense
scene (no nodata pixel, a nodata value set), where the pooled mask can only cost time.

Usage: ``python benchmarks/nodata_skip.py [--threads 1] [--repeat 3]``. Times are the best of
``--repeat`` runs in this one process (the machine may be shared: compare within a run).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from diffris.geo.grid import Grid, Tile
from diffris.geo.scene import Scene, _valid_mask
from diffris.inference.batches import prefetch_batches
from tests.inference.nodata_scenes import NodataKind, RowSource, write_scene

HEIGHT, WIDTH = 20_000, 4_096
VALID_ROWS = (4_580, 4_780)  # inside grid row 10 only (rows 4,480-4,992)
DENSE = 4_096
KINDS = [
    NodataKind.VALUE,
    NodataKind.SPARSE,
    NodataKind.INTERNAL_MASK,
    NodataKind.EXTERNAL_MASK,
    NodataKind.ALPHA,
]


def _rows(valid_rows: tuple[int, int]) -> RowSource:
    """Noise in ``valid_rows``, nodata elsewhere."""

    def rows(row0: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        valid = np.zeros((count, WIDTH), bool)
        valid[max(0, valid_rows[0] - row0) : max(0, valid_rows[1] - row0)] = True
        rng = np.random.default_rng(row0)
        return rng.integers(0, 256, (3, count, WIDTH), dtype=np.uint8), valid

    return rows


def _read_before(self: Scene, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Scene.read as of commit 57fd17f (boolean-index zeroing)."""
    window = self._check_window(window)
    data = self._dataset.read(self._unique, window=window)
    masks = self._dataset.read_masks(self._unique, window=window)
    valid = _valid_mask(data, masks, self.nodata)
    image = self.stretch.apply(data[self._take])
    image[:, ~valid] = 0
    return image, valid


@contextlib.contextmanager
def _before() -> Iterator[None]:
    """The read path before the pooled mask: every window read in full."""
    saved = Scene.read, Scene.may_hold_data
    Scene.read = _read_before  # type: ignore[method-assign]
    Scene.may_hold_data = lambda self, window: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        Scene.read, Scene.may_hold_data = saved  # type: ignore[method-assign]


def _reader_seconds(
    path: Path, grid: Grid, tiles: list[Tile], repeat: int
) -> tuple[float, int, int]:
    """Best wall time to read ``tiles`` through prefetch_batches; (s, kept, skipped)."""
    best, kept, skipped = float("inf"), 0, 0
    for _ in range(repeat):
        with Scene.open(path) as scene:
            started = time.perf_counter()
            batches = list(prefetch_batches(scene.reopen, grid, 4, tiles=tiles))
            best = min(best, time.perf_counter() - started)
        kept, skipped = sum(len(b.tiles) for b in batches), sum(b.skipped for b in batches)
    return best, kept, skipped


def _skip_costs(path: Path, repeat: int) -> dict[str, float]:
    grid = Grid(WIDTH, HEIGHT, tile=512, overlap=64)
    every = list(grid)
    costs = {}
    for label, context in (("before", _before), ("after", contextlib.nullcontext)):
        with context():
            whole, kept, skipped = _reader_seconds(path, grid, every, repeat)
            with Scene.open(path) as scene:
                chosen = [t for t in every if scene.read(t.window)[1].any()]
            alone, _, _ = _reader_seconds(path, grid, chosen, repeat)
        assert (kept, skipped) == (9, 396), (kept, skipped)
        costs[label] = (whole - alone) / skipped * 1000
        costs[f"{label}_whole"] = whole
    return costs


def _whole_runs(path: Path, threads: int, repeat: int) -> dict[str, float]:
    import torch

    from diffris.data.prompts import prompts_from_texts
    from diffris.inference.loading import load_predictor
    from diffris.inference.segment import SegmentOptions, segment_scene

    torch.set_num_threads(threads)
    prompts = prompts_from_texts(["the red roofs"])
    predictor, model_id = load_predictor("tiny", prompts, device="cpu")
    options = SegmentOptions(batch_size=4)
    batch = np.random.default_rng(0).integers(0, 256, (4, 3, 512, 512), np.uint8)
    predictor.predict(batch[:1])  # warm-up
    runs = dict.fromkeys(("model", "before", "after"), float("inf"))
    out = path.with_name("out.tif")
    for _ in range(repeat):
        started = time.perf_counter()
        predictor.predict(batch)  # the 9 kept tiles: batches of 4, 4, 1
        predictor.predict(batch)
        predictor.predict(batch[:1])
        runs["model"] = min(runs["model"], time.perf_counter() - started)
        for label, context in (("before", _before), ("after", contextlib.nullcontext)):
            with context():
                started = time.perf_counter()
                result = segment_scene(
                    path, out, predictor, prompts, options, model_id=model_id, overwrite=True
                )
                runs[label] = min(runs[label], time.perf_counter() - started)
            assert result.skipped_tiles == 396
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        print(
            f"{WIDTH} x {HEIGHT} px scene, 99 % nodata (rows {VALID_ROWS[0]}-{VALID_ROWS[1]} "
            "valid), tiles 512 px, overlap 64: 405 tiles, 396 all nodata\n"
        )
        print(
            f"{'nodata given as':>22} | {'before ms/skipped':>17} | {'after ms/skipped':>16} | "
            f"{'ratio':>6} | {'reader before s':>15} | {'reader after s':>14}"
        )
        print("-" * 105)
        paths = {}
        for kind in KINDS:
            paths[kind] = write_scene(
                folder / f"{kind.value}.tif", WIDTH, HEIGHT, _rows(VALID_ROWS), kind
            )
            costs = _skip_costs(paths[kind], args.repeat)
            print(
                f"{kind.value:>22} | {costs['before']:>17.2f} | {costs['after']:>16.3f} | "
                f"{costs['before'] / costs['after']:>5.0f}x | {costs['before_whole']:>15.2f} | "
                f"{costs['after_whole']:>14.2f}"
            )
        runs = _whole_runs(paths[NodataKind.VALUE], args.threads, args.repeat)
        print(
            f"\nwhole segment run, tiny model, {args.threads} torch thread(s), nodata value: "
            f"before {runs['before']:.2f} s, after {runs['after']:.2f} s "
            f"({runs['before'] / runs['after']:.2f}x); the model alone on the 9 tiles "
            f"{runs['model']:.2f} s; run / model: before {runs['before'] / runs['model']:.2f}, "
            f"after {runs['after'] / runs['model']:.2f}"
        )
        dense = write_scene(
            folder / "dense.tif", DENSE, DENSE, _dense_rows(), NodataKind.VALUE, chunk_rows=512
        )
        grid = Grid(DENSE, DENSE, tile=512, overlap=64)
        with _before():
            slow, kept, _ = _reader_seconds(dense, grid, list(grid), args.repeat)
        fast, _, _ = _reader_seconds(dense, grid, list(grid), args.repeat)
        print(
            f"\ndense {DENSE} x {DENSE} scene with a nodata value (no nodata pixel), reader "
            f"ms per tile: before {slow / kept * 1000:.2f}, after {fast / kept * 1000:.2f} "
            "(the pooled mask's pass included)"
        )


def _dense_rows() -> RowSource:
    """Noise, valid everywhere, never 0 in every band (0 is the nodata value)."""

    def rows(row0: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(row0)
        data = rng.integers(1, 256, (3, count, DENSE), dtype=np.uint8)
        return data, np.ones((count, DENSE), bool)

    return rows


if __name__ == "__main__":
    main()
