"""Wall time of the ``diffris`` commands that should answer at once, and of ``rio --help``.

Each command runs ``--runs`` times in a fresh interpreter (``python -m diffris_cli ...``, as the
console script does) in a scratch folder holding a small GeoTIFF and a prompt file; the table shows the median.
None of these loads a model: help, the version, ``info`` and preflight errors.

Usage: ``python benchmarks/cli_startup.py [--runs 3]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES: list[tuple[str, list[str]]] = [
    ("diffris --help", ["--help"]),
    ("diffris segment --help", ["segment", "--help"]),
    ("diffris --version", ["--version"]),
    ("diffris info", ["info"]),
    (
        "diffris segment missing.tif --text x -o o.tif",
        ["segment", "missing.tif", "-t", "x", "-o", "o.tif"],
    ),
    ("diffris segment scene.tif ... -o o.jpg", ["segment", "scene.tif", "-t", "x", "-o", "o.jpg"]),
    (
        "diffris segment scene.tif ... --co COMPRESS=FOO",
        ["segment", "scene.tif", "-t", "x", "-o", "o.tif", "--co", "COMPRESS=FOO"],
    ),
    (
        "diffris archive missing/ ... --model tiny",
        ["archive", "missing/", "--prompts", "p.yaml", "-o", "out", "--model", "tiny"],
    ),
    (
        "diffris archive . ... --model runs/best",
        ["archive", ".", "--prompts", "p.yaml", "-o", "out", "--model", "runs/best"],
    ),
]


def median_seconds(command: list[str], cwd: Path, runs: int) -> tuple[float, int]:
    """Median wall seconds of ``command`` over ``runs`` runs, and its last exit code."""
    times, code = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True)
        times.append(time.perf_counter() - started)
        code = done.returncode
    return statistics.median(times), code


def write_scene(path: Path) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 3, "dtype": "uint8"}
    profile.update(crs="EPSG:32633", transform=from_origin(500000, 5000000, 1, 1))
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.zeros((3, 64, 64), dtype="uint8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_scene(folder / "scene.tif")
        (folder / "p.yaml").write_text("- {id: r, text: the roads}\n")
        for label, flags in CASES:
            seconds, code = median_seconds(
                [sys.executable, "-m", "diffris_cli", *flags], folder, args.runs
            )
            rows.append((label, seconds, code))
        rio = shutil.which("rio")
        if rio:
            seconds, code = median_seconds([rio, "--help"], folder, args.runs)
            rows.append(("rio --help (reference)", seconds, code))
    width = max(len(label) for label, _, _ in rows)
    print(f"{'command':<{width}}  median s  exit")
    for label, seconds, code in rows:
        print(f"{label:<{width}}  {seconds:8.2f}  {code:4d}")


if __name__ == "__main__":
    main()
