"""Archive throughput: scenes/s with 1 and 2 worker processes, and the no-op rerun time.

Runs the real archive path (discovery, ledger, lock, process-pool workers, segment_scene, atomic
GeoTIFF sinks) with the tiny model and one torch thread per worker, over synthetic scenes in a
temporary folder. Prints a table. Targets: 2 workers >= 1.7x one; a no-op rerun over 100 done
scenes < 5 s. On a machine shared with other jobs, the speed-up is bounded by the free cores.

Usage: ``python benchmarks/archive_scale.py [--scenes 12] [--size 256] [--noop 100]``
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from diffris.archive.pool import ProcessPoolBackend
from diffris.archive.processor import SegmentProcessor
from diffris.archive.runner import ArchiveProgress, archive
from diffris.data.prompts import Prompt
from diffris.inference.segment import SegmentOptions

PROMPTS = (Prompt(id="b", text="buildings"),)
OPTIONS = SegmentOptions(tile=64, overlap=16, batch_size=4)


def write_scenes(folder: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        data = rng.integers(0, 255, (3, size, size), dtype=np.uint8)
        profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8")
        transform = Affine(10, 0, 500_000, 0, -10, 5_000_000)
        with rasterio.open(
            folder / f"s{index:03d}.tif", "w", **profile, crs="EPSG:32633", transform=transform
        ) as dst:
            dst.write(data)


def run(source: Path, out: Path, workers: int) -> tuple[float, int, float]:
    """Wall seconds, scenes done, and the steady rate in scenes/s once every worker is loaded:
    ``(n - w) / (t_n - t_w)`` from the completion times ``t_i``."""
    processor = SegmentProcessor(model="tiny", prompts=PROMPTS)
    finished: list[float] = []

    def progress(state: ArchiveProgress) -> None:
        if state.done > len(finished):
            finished.append(time.perf_counter())

    started = time.perf_counter()
    report = archive(
        source,
        out_dir=out,
        processor=processor,
        model="tiny",
        model_id="tiny",
        prompts=PROMPTS,
        options=processor.job_options(OPTIONS),
        backend=ProcessPoolBackend(workers, threads=1),
        progress=progress,
    )
    wall, done = time.perf_counter() - started, report.counts["done"]
    steady = (done - workers) / (finished[-1] - finished[workers - 1])
    return wall, done, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--noop", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_scenes(root / "in", args.scenes, args.size)
        rows = []
        rates = {}
        for workers in (1, 2):
            # Model loading (once per worker per night) is in the wall time, not the steady rate.
            seconds, done, steady = run(root / "in", root / f"out{workers}", workers)
            rates[workers] = steady
            label = f"{workers} worker(s), {done} scenes {args.size}²"
            rows.append((label, seconds, done / seconds, steady))
        write_scenes(root / "many", args.noop, 64)
        run(root / "many", root / "noop", 2)
        started = time.perf_counter()
        processor = SegmentProcessor(model="tiny", prompts=PROMPTS)
        report = archive(
            root / "many",
            out_dir=root / "noop",
            processor=processor,
            model="tiny",
            model_id="tiny",
            prompts=PROMPTS,
            options=processor.job_options(OPTIONS),
        )
        noop = time.perf_counter() - started
        assert report.counts["skipped"] == args.noop
    print(f"{'case':40s} {'wall s':>9s} {'scenes/s':>9s} {'steady/s':>9s}")
    for label, seconds, rate, steady in rows:
        print(f"{label:40s} {seconds:9.2f} {rate:9.3f} {steady:9.3f}")
    print(
        f"{'steady speed-up 2 vs 1 (target >= 1.7)':40s} {'':9s} {'':9s} {rates[2] / rates[1]:9.2f}"
    )
    print(f"{f'no-op rerun of {args.noop} done scenes (< 5 s)':40s} {noop:9.2f}")


if __name__ == "__main__":
    main()
