"""How well a trained model segments the bundled example scene: IoU per prompt.

    python benchmarks/demo_scene.py [--model examples/models/demo|demo-rsrefseg] [--threads 2]

Segments ``examples/scene.tif`` (2048², a nodata collar) for every prompt of
``examples/prompts.yaml`` with the default segment options (512 px tiles, 64 px overlap) and
prints, per prompt, the IoU against ``examples/truth/<id>.tif`` with the predicted and true pixel
counts, then the segmentation time. This is the table of README's "Two commands"; the test
``tests/train/test_demo_model.py`` holds both committed demo models (DiffRIS's ``demo``,
RSRefSeg's ``demo-rsrefseg``) to IoU ≥ 0.7 for each prompt. Any trained-model folder of either
architecture works, e.g. a run's ``best``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import rasterio
import torch

from diffris.data.prompts import load_prompts
from diffris.eval.metrics import iou, iou_counts
from diffris.inference.loading import load_predictor
from diffris.inference.segment import SegmentOptions, segment_scene

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=EXAMPLES / "models" / "demo")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts = load_prompts(EXAMPLES / "prompts.yaml")
    predictor, model_id = load_predictor(args.model, prompts, device="cpu")
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "masks.tif"
        started = time.perf_counter()
        segment_scene(
            EXAMPLES / "scene.tif", output, predictor, prompts, SegmentOptions(), model_id=model_id
        )
        seconds = time.perf_counter() - started
        with rasterio.open(output) as masks:
            predicted = masks.read() == 1
    print(f"model: {args.model}")
    print(f"{'prompt':>20} | {'IoU':>5} | {'predicted px':>12} | {'true px':>9}")
    for band, prompt in enumerate(prompts):
        with rasterio.open(EXAMPLES / "truth" / f"{prompt.id}.tif") as truth:
            expected = truth.read(1) == 1
        score = iou(*iou_counts(predicted[band], expected))
        print(
            f"{prompt.text:>20} | {score:5.3f} | {predicted[band].sum():12,d} | "
            f"{expected.sum():9,d}"
        )
    print(f"segmented in {seconds:.1f} s, torch threads: {args.threads}")


if __name__ == "__main__":
    main()
