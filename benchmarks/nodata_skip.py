"""What skipping nodata costs: ms per skipped tile before and after the pooled mask, and the run.

A 20,000 x 4,096 scene that is 99 % nodata (valid rows 4,580-4,780 only: 9 of its 405 tiles
of 512 px, overlap 64, hold data) is written with its nodata given each way GDAL knows. For
each, the tile reader (``prefetch_batches``, no model) runs over the whole grid, and over the
396 empty tiles alone: ms per skipped tile is the latter / 396 (the pooled mask's pass, the
decode of the valid rows' blocks included). Then one whole ``segment_scene`` run with the
``tiny`` model on the nodata-value scene, against the model alone on its 9 tiles; and the
reader on a dense 4,096 x 4,096 scene (a nodata value set, no nodata pixel), where the pooled
mask can only cost time.

"Before" is the code at ``--before`` (default: the commit before the pooled mask), taken with
``git archive`` and run in a child process like "after", this working tree; the two alternate
``--repeat`` times and each time is the best of those (the machine may be shared: compare
within one run).

Usage: ``python benchmarks/nodata_skip.py [--threads 1] [--repeat 3] [--before 57fd17f]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HEIGHT, WIDTH = 20_000, 4_096
VALID_ROWS = (4_580, 4_780)  # inside grid row 10 only (rows 4,480-4,992)
DENSE = 4_096
ROOT = Path(__file__).resolve().parents[1]
KINDS = ("nodata-value", "nodata-value-sparse", "internal-mask", "external-mask", "alpha")
TIMES = ("whole", "empty")


def _reader(path: str, tiles: list[int] | None, repeat: int) -> tuple[float, list[int], int]:
    """Best wall time of prefetch_batches over ``tiles`` (None: all); (s, kept, skipped)."""
    from diffris.geo.grid import Grid
    from diffris.geo.scene import Scene
    from diffris.inference.batches import prefetch_batches

    best, kept, skipped = float("inf"), [], 0
    for _ in range(repeat):
        with Scene.open(path) as scene:
            grid = Grid(scene.width, scene.height, tile=512, overlap=64)
            chosen = None if tiles is None else [grid.tile_by_index(i) for i in tiles]
            started = time.perf_counter()
            batches = list(prefetch_batches(scene.reopen, grid, 4, tiles=chosen))
            best = min(best, time.perf_counter() - started)
        kept = [t.index for b in batches for t in b.tiles]
        skipped = sum(b.skipped for b in batches)
    return best, kept, skipped


def _child(args: argparse.Namespace) -> None:
    """Measure this process's diffris (before or after) and print one JSON line."""
    import torch

    from diffris.data.prompts import prompts_from_texts
    from diffris.inference.loading import load_predictor
    from diffris.inference.segment import SegmentOptions, segment_scene

    folder = Path(args.scenes)
    found: dict[str, Any] = {"diffris": str(Path(sys.modules["diffris"].__file__).parent)}
    for kind in KINDS:
        path = str(folder / f"{kind}.tif")
        whole, kept, skipped = _reader(path, None, args.repeat)
        empty = sorted(set(range(len(kept) + skipped)) - set(kept))
        alone, _, _ = _reader(path, empty, args.repeat)
        found[kind] = {"whole": whole, "empty": alone, "kept": len(kept), "skipped": skipped}
    dense, kept, _ = _reader(str(folder / "dense.tif"), None, args.repeat)
    found["dense_ms_per_tile"] = dense / len(kept) * 1000

    torch.set_num_threads(args.threads)
    prompts = prompts_from_texts(["the red roofs"])
    predictor, model_id = load_predictor("tiny", prompts, device="cpu")
    batch = np.random.default_rng(0).integers(0, 256, (4, 3, 512, 512), np.uint8)
    predictor.predict(batch[:1])  # warm-up
    model = run = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        for size in (4, 4, 1):  # the 9 kept tiles in batches of 4
            predictor.predict(batch[:size])
        model = min(model, time.perf_counter() - started)
        started = time.perf_counter()
        result = segment_scene(
            folder / "nodata-value.tif",
            folder / f"out-{os.getpid()}.tif",
            predictor,
            prompts,
            SegmentOptions(batch_size=4),
            model_id=model_id,
            overwrite=True,
        )
        run = min(run, time.perf_counter() - started)
    found["run"], found["model"], found["run_skipped"] = run, model, result.skipped_tiles
    print(json.dumps(found))


def _write_scenes(folder: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.inference.nodata_scenes import NodataKind, write_scene

    def sparse(row0: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        valid = np.zeros((count, WIDTH), bool)
        valid[max(0, VALID_ROWS[0] - row0) : max(0, VALID_ROWS[1] - row0)] = True
        data = np.random.default_rng(row0).integers(0, 256, (3, count, WIDTH), dtype=np.uint8)
        return data, valid

    def dense(row0: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        data = np.random.default_rng(row0).integers(1, 256, (3, count, DENSE), dtype=np.uint8)
        return data, np.ones((count, DENSE), bool)

    for kind in KINDS:
        write_scene(folder / f"{kind}.tif", WIDTH, HEIGHT, sparse, NodataKind(kind))
    write_scene(folder / "dense.tif", DENSE, DENSE, dense, NodataKind.VALUE, chunk_rows=512)


def _measure(code: Path, scenes: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--scenes", str(scenes)]
    command += ["--threads", str(args.threads), "--repeat", "1"]
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"the child for {code} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--before", default="57fd17f", help="git revision measured as before")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scenes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        archive = folder / "before.tar"
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", "-o", str(archive), args.before, "diffris"],
            check=True,
        )
        with tarfile.open(archive) as tar:
            tar.extractall(folder / "before", filter="data")
        scenes = folder / "scenes"
        scenes.mkdir()
        _write_scenes(scenes)
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for _ in range(args.repeat):  # alternate, so a busy spell on the machine hits both
            runs["before"].append(_measure(folder / "before", scenes, args))
            runs["after"].append(_measure(ROOT, scenes, args))
        _print(_best(runs["before"]), _best(runs["after"]), args)


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of each time over several children's results."""
    best = dict(runs[0])
    for kind in KINDS:
        best[kind] = {**runs[0][kind], **{k: min(r[kind][k] for r in runs) for k in TIMES}}
    for key in ("dense_ms_per_tile", "run", "model"):
        best[key] = min(r[key] for r in runs)
    return best


def _print(before: dict[str, Any], after: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"{WIDTH} x {HEIGHT} px scene, 99 % nodata (rows {VALID_ROWS[0]}-{VALID_ROWS[1]} valid), "
        f"tiles 512 px, overlap 64: 405 tiles, 396 all nodata; before = {args.before}\n"
    )
    print(
        f"{'nodata given as':>20} | {'ms/skipped before':>17} | {'after':>7} | {'ratio':>6} | "
        f"{'reader s before':>15} | {'after':>6}"
    )
    print("-" * 88)
    for kind in KINDS:
        cost = {}
        for label, found in (("before", before[kind]), ("after", after[kind])):
            if (found["kept"], found["skipped"]) != (9, 396):
                raise SystemExit(f"{label}, {kind}: kept {found['kept']}, {found['skipped']}")
            cost[label] = found["empty"] / found["skipped"] * 1000
        print(
            f"{kind:>20} | {cost['before']:>17.2f} | {cost['after']:>7.3f} | "
            f"{cost['before'] / max(cost['after'], 1e-6):>5.0f}x | "
            f"{before[kind]['whole']:>15.2f} | {after[kind]['whole']:>6.2f}"
        )
    print(
        f"\nwhole segment run (tiny, {args.threads} torch thread(s), nodata value): "
        f"before {before['run']:.2f} s, after {after['run']:.2f} s "
        f"({before['run'] / after['run']:.2f}x faster); the model alone on the 9 tiles "
        f"{after['model']:.2f} s; run / model: before {before['run'] / before['model']:.2f}, "
        f"after {after['run'] / after['model']:.2f}"
    )
    print(
        f"dense {DENSE} x {DENSE} scene (nodata value set, no nodata pixel), reader ms per "
        f"tile: before {before['dense_ms_per_tile']:.2f}, after {after['dense_ms_per_tile']:.2f}"
    )


if __name__ == "__main__":
    main()
