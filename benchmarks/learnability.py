"""Learnability: the tiny model on synthetic data, its validation mIoU, and the drop when the
sentences are shuffled between samples (the model must use the text).

    python benchmarks/learnability.py [--samples 1200] [--epochs 3] [--size 256] [--lr 3e-3]

Writes a synthetic RISBench-layout dataset (seed 0) of ``--size`` px images with objects at their
native size (like tiles of a large scene) and sentences that name a category or a colour ("the
red car", "the ponds"), trains the tiny preset with cached latents on one process, then scores
the best epoch on the validation split twice: with the true sentences and with each sentence
moved to another sample. Prints both mIoUs and the CPU time.
The slow test ``tests/train/test_learnability.py`` runs the same function with fixed targets.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from diffris.data.synthetic import write_dataset
from diffris.data.transforms import ResizeToModel
from diffris.models.checkpoint import load_trained
from diffris.train import LaunchOptions, TrainConfig, train
from diffris.train.data import open_split
from diffris.train.learnability import score_with_and_without_text


def learnability(
    work: Path, *, samples: int, epochs: int, size: int, lr: float, threads: int = 2
) -> dict[str, float]:
    """Train and score; mIoU with true and shuffled sentences, and the CPU seconds spent."""
    cpu, wall = time.process_time(), time.perf_counter()
    root = work / "data"
    val = max(8, samples // 8)
    write_dataset(
        root,
        layout="risbench",
        samples=samples + 2 * val,
        splits=(samples, val, val),
        size=size,
        easy_fraction=1.0,
        object_scale=1.0,
    )
    config = TrainConfig(
        dataset="synthetic",
        data_root=str(root),
        preset="tiny",
        epochs=epochs,
        batch_size=8,
        device_batch=8,
        image_size=size,
        lr=lr,
        cache_latents=True,
    )
    train(config, work / "run", launch=LaunchOptions(workers=0, threads=threads, save_every=0))
    model = load_trained(work / "run" / "best")
    dataset = open_split("synthetic", root, "val", ResizeToModel(size))
    true, shuffled = score_with_and_without_text(model, dataset)
    return {
        "miou": true.miou,
        "shuffled_miou": shuffled.miou,
        "oiou": true.oiou,
        "n": true.n,
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1200, help="training samples")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="image side, px")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        figures = learnability(Path(scratch), **vars(args))
    print(
        f"tiny preset, {args.samples} training samples of {args.size}² px, {args.epochs} epochs, "
        f"lr {args.lr:g}, {args.threads} thread(s); validation n={figures['n']}"
    )
    print(f"{'sentences':>9} | {'val mIoU':>8} | {'val oIoU':>8}")
    print(f"{'true':>9} | {figures['miou']:8.2f} | {figures['oiou']:8.2f}")
    print(f"{'shuffled':>9} | {figures['shuffled_miou']:8.2f} | {'':>8}")
    print(
        f"drop {figures['miou'] - figures['shuffled_miou']:.2f} points; "
        f"{figures['cpu_s']:.0f} s CPU, {figures['wall_s']:.0f} s wall (data, training, scoring)"
    )


if __name__ == "__main__":
    main()
