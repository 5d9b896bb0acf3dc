"""Make docs/report-example.png: the ``diffris evaluate --report`` page, rendered in Chromium.

The only trained model that ships with diffris is the demo model (synthetic scenes, not the
sentence-level benchmarks), so the example scores a *simulated method*: its predictions are the
ground truth of a synthetic RRSIS-D-layout test split (whose annotations carry categories),
degraded at random (shifted, grown, shrunk, dropped or replaced by another object's mask), seeded. That gives the report realistic spreads of IoU to show; the
figures say nothing about DiffRIS.

    python tools/make_report_example.py [--out docs/report-example.png] [--samples 48]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from diffris.data.base import open_dataset
from diffris.data.synthetic import write_dataset
from diffris.eval.evaluate import EvaluateOptions, evaluate
from diffris.eval.predictions import prediction_file

HERE = Path(__file__).resolve().parent


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate (pixels > 0) or erode (pixels < 0) with a square of side 2|pixels| + 1."""
    out = mask.copy()
    for _ in range(abs(pixels)):
        padded = np.pad(out, 1, constant_values=pixels < 0)
        shifted = [
            padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ]
        out = np.logical_or.reduce(shifted) if pixels > 0 else np.logical_and.reduce(shifted)
    return out


def simulated_prediction(truth: np.ndarray, other: np.ndarray, rng: np.random.Generator):
    """A plausible imperfect prediction of ``truth``."""
    roll = rng.random()
    if roll < 0.12:
        return np.zeros_like(truth)  # missed
    if roll < 0.25:
        return other  # the wrong object
    shift = rng.integers(-12, 13, size=2) if rng.random() < 0.6 else (0, 0)
    out = np.roll(truth, tuple(int(s) for s in shift), axis=(0, 1))
    return grow(out, int(rng.integers(-3, 6)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "report-example.png")
    parser.add_argument("--samples", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root, preds = Path(scratch) / "RRSIS-D", Path(scratch) / "preds"
        write_dataset(
            root, layout="rrsisd", samples=args.samples + 8, splits=(4, 4, args.samples), seed=0
        )
        dataset = open_dataset("rrsisd", root, "test")
        rng = np.random.default_rng(0)
        preds.mkdir()
        for index in range(len(dataset)):
            truth = dataset.sample(index).mask
            other = dataset.sample((index + 1) % len(dataset)).mask
            prediction = simulated_prediction(truth, other, rng)
            name = prediction_file(dataset.meta(index).sample_id, "test")
            Image.fromarray(prediction.astype(np.uint8) * 255).save(preds / name)
        result = evaluate(
            "rrsisd", root, "test", predictions=preds, options=EvaluateOptions(gallery=4)
        )
        settings = dict(result.settings, root="RRSIS-D/ (synthetic)", predictions="preds/")
        result = type(result)(
            scores=result.scores,
            settings=settings,
            best=result.best,
            worst=result.worst,
            title="RRSIS-D test: predictions of a simulated method (synthetic data)",
        )
        report = result.write_report(Path(scratch) / "report.html")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        script = HERE / "screenshot_report.sh"
        done = subprocess.run([str(script), str(report), str(args.out), "1280,2700"], check=False)
        if done.returncode:
            sys.exit(done.returncode)
    with Image.open(args.out) as shot:  # 256 colours: a third of the size, no visible change
        small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
