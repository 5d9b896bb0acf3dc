"""Polygons in bounded memory: peak RSS and time of streaming polygonisation against one call.

For a 2048-wide scene of growing height (2048 and 16384 rows by default), each in a fresh
process so that peak RSS is that run's alone:

- ``raster``: ``segment_scene`` writing the mask GeoTIFF only (the baseline of the pipeline);
- ``both``: the same run also writing the polygons to a GeoPackage, polygonised band by band as
  the stitcher finishes rows (``-o masks.tif --vector polygons.gpkg``);
- ``one call``: the finished mask read whole and polygonised in one ``rasterio.features.shapes``
  call (geometries only: no attributes, nothing written), where it fits in memory.

The model is a stand-in (the probability is the scene's red channel), so the figures are the
cost of reading, blending, writing and polygonising, not of a network. The scene holds a grid
of blobs and one winding object running from the first row to the last, which stays open
across every band.

GDAL's block cache (``GDAL_CACHEMAX``, by default 5 % of the RAM, filled as blocks are read
and written) is capped at ``--gdal-cache`` MB in every run (16 by default): uncapped, it alone
grows with the scene up to that 5 %, in the raster-only run as much as in the others.

Usage: ``python benchmarks/vector_memory.py [--heights 2048,16384] [--gdal-cache 16]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH = 2048


class RedPredictor:
    """Stand-in model: the probability of each pixel is its red value / 255."""

    prompt_count = 1

    def predict(self, tiles):  # type: ignore[no-untyped-def]
        return (tiles[:, :1] / 255.0).astype("float32")


def write_scene(path: Path, height: int) -> None:
    """Blobs (~70 x 100 px) and one object winding from the top row to the bottom one."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from tests.inference.scenes import CRS_UTM, TRANSFORM

    profile = dict(
        driver="GTiff", width=WIDTH, height=height, count=3, dtype="uint8", crs=CRS_UTM,
        transform=TRANSFORM, tiled=True, blockxsize=512, blockysize=512, compress="deflate",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, height, 512):
            y, x = np.mgrid[top : min(top + 512, height), 0:WIDTH]
            field = 0.5 + 0.5 * np.sin(x / 23.0) * np.cos(y / 31.0)
            snake = np.abs(x - (1000 + 300 * np.sin(y / 400.0))) < 9
            red = np.where(snake, 1.0, field * 0.98)
            data = np.stack([red * 255, red * 200, red * 100]).astype(np.uint8)
            dst.write(data, window=Window(0, top, WIDTH, data.shape[1]))


def _child(args: argparse.Namespace) -> None:
    from diffris.data.prompts import Prompt
    from diffris.geo.vector import VectorOptions
    from diffris.inference.segment import SegmentOptions, VectorTarget, segment_scene

    started = time.perf_counter()
    polygons = None
    if args.mode == "one-call":
        import numpy as np
        import rasterio
        from rasterio.features import shapes
        from shapely.geometry import shape

        with rasterio.open(args.mask) as src:
            mask = src.read(1)
        data = mask == 1
        polygons = len(
            [shape(g) for g, _ in shapes(data.astype(np.uint8), mask=data, connectivity=4)]
        )
    else:
        vector = VectorTarget(Path(args.vector), VectorOptions()) if args.mode == "both" else None
        result = segment_scene(
            args.scene,
            Path(args.mask),
            RedPredictor(),
            [Prompt("blobs", "the blobs")],
            SegmentOptions(stretch=(0.0, 255.0), batch_size=4),
            model_id="stand-in",
            overwrite=True,
            vector=vector,
        )
        polygons = result.polygons
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "polygons": polygons}))


def _measure(mode: str, scene: Path, mask: Path, vector: Path, cache_mb: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--scene", str(scene)]
    command += ["--mask", str(mask), "--vector", str(vector)]
    env = {**os.environ, "GDAL_CACHEMAX": str(cache_mb)}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--heights", default="2048,16384")
    parser.add_argument("--gdal-cache", type=int, default=16, help="GDAL_CACHEMAX, MB")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--mask", help=argparse.SUPPRESS)
    parser.add_argument("--vector", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        _child(args)
        return
    heights = [int(h) for h in args.heights.split(",")]
    print(
        "stand-in model (red channel), tile 512, overlap 64, one prompt, GeoPackage output, "
        f"GDAL_CACHEMAX={args.gdal_cache} MB; RSS in MiB\n"
    )
    header = (
        f"{'scene':>11} | {'polygons':>8} | {'raster s':>8} | {'both s':>6} | "
        f"{'vector s':>8} | {'one call s':>10} | {'RSS raster':>10} | {'RSS both':>8} | "
        f"{'RSS one call':>12}"
    )
    print(header + "\n" + "-" * len(header))
    peaks = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for height in heights:
            scene, mask, vector = (folder / f"{n}-{height}" for n in ("scene", "mask", "poly"))
            scene, mask, vector = (
                scene.with_suffix(".tif"),
                mask.with_suffix(".tif"),
                vector.with_suffix(".gpkg"),
            )
            write_scene(scene, height)
            raster = _measure("raster", scene, mask, vector, args.gdal_cache)
            both = _measure("both", scene, mask, vector, args.gdal_cache)
            one = _measure("one-call", scene, mask, vector, args.gdal_cache)
            peaks.append(both["peak_mib"])
            print(
                f"{WIDTH:>4}x{height:<6} | {both['polygons']:>8} | {raster['seconds']:>8.1f} | "
                f"{both['seconds']:>6.1f} | {both['seconds'] - raster['seconds']:>8.1f} | "
                f"{one['seconds']:>10.1f} | {raster['peak_mib']:>10.0f} | "
                f"{both['peak_mib']:>8.0f} | {one['peak_mib']:>12.0f}"
            )
            if one["polygons"] != both["polygons"]:
                print(f"  (one call finds {one['polygons']} polygons)")
    print(
        f"\npeak RSS with polygons, tallest / smallest: {peaks[-1] / peaks[0]:.2f} (goal <= 1.15)"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
