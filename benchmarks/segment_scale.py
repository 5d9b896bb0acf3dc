"""How ``diffris segment`` scales with scene size, and what reading/writing and prompts cost.

Prints three tables, with the tiny model on this CPU:

1. scenes of fixed width and growing height: tiles, seconds, tiles/s, peak RSS of a fresh
   process (memory must not grow with the scene's area: the stitcher holds one band of rows,
   and GDAL's block cache is bounded as ``diffris segment`` bounds it);
2. for the same tiles, the model alone in a tight loop (``predictor.predict`` on batches held in
   memory) against the whole ``segment`` run: the difference is reading, blending and writing
   that did not overlap with compute;
3. one run with 4 prompts against four one-prompt runs (text features once per prompt, the VAE
   latent once per tile and shared by every prompt).

Usage: ``python benchmarks/segment_scale.py [--heights 2048,8192,16384] [--threads 2]``
Each measurement runs in its own process so peak RSS is that run's alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH = 2048
PROMPTS = ["the red roofs", "the ponds", "the roads", "the blue vehicles"]


def _child(args: argparse.Namespace) -> None:
    """Run one measurement in this (fresh) process and print a JSON line."""
    import resource

    import numpy as np
    import torch

    from diffris.data.prompts import prompts_from_texts
    from diffris.geo.grid import Grid
    from diffris.inference.loading import load_predictor
    from diffris.inference.segment import SegmentOptions, segment_scene

    torch.set_num_threads(args.threads)
    prompts = prompts_from_texts(PROMPTS[: args.prompts])
    predictor, model_id = load_predictor("tiny", prompts, device="cpu")
    options = SegmentOptions(batch_size=args.batch)
    if args.mode == "segment":
        from diffris.geo.gdal_cache import bounded_gdal_cache, resolve_gdal_cache

        started = time.perf_counter()
        with bounded_gdal_cache(resolve_gdal_cache().size):  # as `diffris segment` does
            result = segment_scene(
                args.scene, Path(args.out), predictor, prompts, options, model_id=model_id
            )
        seconds = time.perf_counter() - started
        tiles = result.tiles - result.skipped_tiles
    else:  # the model alone on the same number of tiles, batches already in memory
        import rasterio

        with rasterio.open(args.scene) as scene:
            grid = Grid(scene.width, scene.height, tile=options.tile, overlap=options.overlap)
        tiles = len(grid)
        batch = np.random.default_rng(0).integers(0, 256, (args.batch, 3, 512, 512), np.uint8)
        predictor.predict(batch[:1])  # warm-up, as segment's first batch also pays it
        started = time.perf_counter()
        for start in range(0, tiles, args.batch):
            predictor.predict(batch[: min(args.batch, tiles - start)])
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tiles": tiles, "seconds": seconds, "peak_mib": peak}))


def _measure(scene: Path, out: Path, mode: str, prompts: int, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--scene",
        str(scene),
        "--out",
        str(out),
        "--mode",
        mode,
        "--prompts",
        str(prompts),
        "--threads",
        str(args.threads),
        "--batch",
        str(args.batch),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--heights", default="2048,8192,16384")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    from diffris.data.synthetic import write_scene

    heights = [int(h) for h in args.heights.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        scenes = {}
        for height in heights:
            scenes[height] = folder / f"scene-{height}.tif"
            write_scene(
                scenes[height], size=(height, WIDTH), seed=3, nodata_border=0, overviews=False
            )
        print(
            f"tiny model, {args.threads} torch thread(s), batch {args.batch}, tile 512, "
            "overlap 64, one prompt\n"
        )
        print(
            f"{'scene':>12} | {'tiles':>5} | {'segment s':>9} | {'tiles/s':>7} | "
            f"{'peak RSS MiB':>12} | {'model alone s':>13} | {'segment/model':>13}"
        )
        print("-" * 92)
        rows = []
        for height in heights:
            run = _measure(scenes[height], folder / f"m-{height}.tif", "segment", 1, args)
            alone = _measure(scenes[height], folder / "unused.tif", "model", 1, args)
            rows.append(run)
            print(
                f"{WIDTH:>5}x{height:<6} | {run['tiles']:>5} | {run['seconds']:>9.1f} | "
                f"{run['tiles'] / run['seconds']:>7.2f} | {run['peak_mib']:>12.0f} | "
                f"{alone['seconds']:>13.1f} | {run['seconds'] / alone['seconds']:>13.2f}"
            )
        print(
            f"\npeak RSS, tallest / smallest scene: {rows[-1]['peak_mib'] / rows[0]['peak_mib']:.2f}"
            " (target <= 1.15)"
        )
        smallest = scenes[heights[0]]
        four = _measure(smallest, folder / "four.tif", "segment", 4, args)
        ones = [
            _measure(smallest, folder / f"one-{i}.tif", "segment", 1, args)["seconds"]
            for i in range(4)
        ]
        print(
            f"\n4 prompts in one run: {four['seconds']:.1f} s; four one-prompt runs: "
            f"{sum(ones):.1f} s; ratio {four['seconds'] / sum(ones):.2f} (target <= 0.6)"
        )


if __name__ == "__main__":
    main()
