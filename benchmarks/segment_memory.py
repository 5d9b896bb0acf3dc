"""Peak memory of ``diffris segment`` as the scene grows taller, with GDAL's block cache bounded
by diffris (``--gdal-cache``, 32 MiB by default) and with GDAL's own default (5 % of the RAM).

Two kinds of scene, each run by the real command (``python -m diffris_cli segment --json``) in a
fresh process, so the peak RSS is that run's alone:

- dense: 4096 px wide, every pixel valid, heights 2048 to 16384 rows (8x the area);
- sparse: 50,000 px wide, nodata but for one 1024-px-wide strip per block row (the tiles read
  are all of the scene's width; only a few are predicted), 1x, 2x and 6x the rows.

The memory of a run must follow the scene's width, never its area: the ratio column is each
run's peak over the smallest scene's of the same width and cache setting (goal: <= 1.05 at 8x
the area, flat for the 50,000-wide scenes).

``--trace`` prints, for one scene, the RSS after every grid row (sampled in the run's own
process through the progress callback) to show where memory grows.

Usage: ``python benchmarks/segment_memory.py [--dense 2048,16384] [--sparse 1024,2048,6144]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DENSE_WIDTH = 4096
SPARSE_WIDTH = 50_000
BLOCK = 512


def write_scene(path: Path, width: int, height: int, *, sparse: bool) -> None:
    """A tiled, compressed RGB GeoTIFF; ``sparse``: nodata but one 1024-px strip per block row."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from tests.inference.scenes import CRS_UTM, TRANSFORM

    profile = dict(
        driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=CRS_UTM,
        transform=TRANSFORM, tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress="deflate",
        nodata=0, sparse_ok=True,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, height, BLOCK):
            rows = min(BLOCK, height - top)
            left = (top // BLOCK * 3 * BLOCK) % (width - 1024) if sparse else 0
            right = left + 1024 if sparse else width
            y, x = np.mgrid[top : top + rows, left:right]
            field = 0.5 + 0.5 * np.sin(x / 23.0) * np.cos(y / 31.0)
            data = np.stack([field * 250 + 5, field * 200 + 5, field * 100 + 5]).astype(np.uint8)
            dst.write(data, window=Window(left, top, right - left, rows))


def _run_segment(scene: Path, out: Path, cache: str | None, threads: int) -> dict:
    """``diffris segment`` in a fresh process; its ``--json`` summary of the scene."""
    command = [sys.executable, "-m", "diffris_cli", "segment", str(scene), "-o", str(out)]
    command += ["--text", "the red roofs", "--model", "tiny", "--device", "cpu", "--json"]
    command += ["--overwrite", *(["--gdal-cache", cache] if cache else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.pop("GDAL_CACHEMAX", None)
    env.pop("DIFFRIS_GDAL_CACHE", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"segment failed:\n{done.stderr}")
    return json.loads(done.stdout)["scenes"][0]


def _trace(scene: str, out: str, cache: str | None) -> None:
    """Segment ``scene`` in this process and print the RSS after each grid row."""
    import psutil

    from diffris.data.prompts import prompts_from_texts
    from diffris.geo.gdal_cache import bounded_gdal_cache, resolve_gdal_cache
    from diffris.geo.grid import Grid
    from diffris.inference.loading import load_predictor
    from diffris.inference.segment import SegmentOptions, open_scene, segment_scene

    process = psutil.Process()
    prompts = prompts_from_texts(["the red roofs"])
    predictor, model_id = load_predictor("tiny", prompts, device="cpu")
    options = SegmentOptions()
    with open_scene(scene, options) as opened:
        grid = Grid(opened.width, opened.height, tile=options.tile, overlap=options.overlap)
    samples: list[tuple[int, float]] = []

    def progress(done: int, total: int) -> None:
        row = (done - 1) // grid.n_cols
        if not samples or row != samples[-1][0]:
            samples.append((row, process.memory_info().rss / 2**20))

    with bounded_gdal_cache(resolve_gdal_cache(cache).size):
        before = process.memory_info().rss / 2**20
        segment_scene(
            scene, Path(out), predictor, prompts, options, model_id=model_id, progress=progress
        )
    print(f"RSS before the scene: {before:.0f} MiB")
    print(f"{'grid row':>8} | {'RSS MiB':>7} | {'growth':>6}")
    for row, rss in samples:
        print(f"{row:>8} | {rss:>7.0f} | {rss - samples[0][1]:>+6.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dense", default="2048,16384", help="heights of the 4096-wide scenes")
    parser.add_argument("--sparse", default="1024,2048,6144", help="heights, 50,000 wide")
    parser.add_argument(
        "--caches",
        default="default,5%",
        help="--gdal-cache values to compare; 'default' passes none, 5%% is GDAL's own default",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument("--trace", metavar="WIDTHxHEIGHT", help="RSS per grid row of one scene")
    parser.add_argument("--trace-cache", default=None, help="--gdal-cache of the traced run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if args.trace:
            width, height = (int(n) for n in args.trace.lower().split("x"))
            scene = folder / "scene.tif"
            write_scene(scene, width, height, sparse=width >= SPARSE_WIDTH)
            _trace(str(scene), str(folder / "out.tif"), args.trace_cache)
            return
        scenes = [(DENSE_WIDTH, int(h), False) for h in args.dense.split(",") if h]
        scenes += [(SPARSE_WIDTH, int(h), True) for h in args.sparse.split(",") if h]
        print(
            f"diffris segment --model tiny, one prompt, tile 512, overlap 64, batch 4, "
            f"{args.threads} thread(s); each run a fresh process\n"
        )
        header = (
            f"{'width':>6} | {'rows':>6} | {'tiles':>5} | {'predicted':>9} | {'GDAL cache':>11} "
            f"| {'seconds':>7} | {'peak RSS MiB':>12} | {'ratio':>5}"
        )
        print(header + "\n" + "-" * len(header))
        first: dict[tuple[int, str], float] = {}
        for width, height, sparse in scenes:
            scene = folder / f"scene-{width}x{height}.tif"
            write_scene(scene, width, height, sparse=sparse)
            for name in args.caches.split(","):
                cache = None if name == "default" else name
                started = time.perf_counter()
                result = _run_segment(scene, folder / "out.tif", cache, args.threads)
                seconds = time.perf_counter() - started
                peak = result["peak_memory_mib"]
                base = first.setdefault((width, name), peak)
                predicted = result["tiles"] - result["skipped_tiles"]
                print(
                    f"{width:>6} | {height:>6} | {result['tiles']:>5} | {predicted:>9} | "
                    f"{name:>11} | {seconds:>7.1f} | {peak:>12.0f} | {peak / base:>5.2f}",
                    flush=True,
                )
            scene.unlink()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
