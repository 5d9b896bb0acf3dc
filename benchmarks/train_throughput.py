"""Training throughput of the tiny preset on this CPU: samples/s with and without
``--cache-latents``, with 1 and 2 processes (gloo).

    python benchmarks/train_throughput.py [--size 256] [--steps 6] [--samples 64]

Writes a small synthetic dataset to a temporary folder, then for each setting runs ``--steps``
optimiser steps (global batch 8, one thread per process, no validation) and prints the median
samples/s of the steps after the first (the first step and the latent encoding are excluded;
the cache's one-off encoding time is printed separately). On a shared machine, run it when the
CPUs are otherwise idle: figures scale with the free cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from diffris.data.synthetic import write_dataset
from diffris.train import LaunchOptions, StepEvent, TrainConfig, train


def measure(root: Path, work: Path, *, size: int, steps: int, procs: int, cache: bool) -> dict:
    """Run one setting; median samples/s of steps 2.. and the whole call's seconds."""
    config = TrainConfig(
        dataset="synthetic",
        data_root=str(root),
        preset="tiny",
        epochs=1000,
        batch_size=8,
        device_batch=8 // procs,
        image_size=size,
        lr=1e-3,
        cache_latents=cache,
        val_split="",
    )
    launch = LaunchOptions(procs=procs, workers=0, threads=1, save_every=0, max_steps=steps)
    seen: list[StepEvent] = []
    run = work / f"p{procs}-{'cache' if cache else 'vae'}"
    result = train(config, run, launch=launch, overwrite=True, on_event=seen.append)
    rates = [event.samples_per_s for event in seen[1:]]
    return {"samples_per_s": statistics.median(rates), "seconds": result.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="input side in px")
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per setting")
    parser.add_argument("--samples", type=int, default=64, help="training samples written")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        root = work / "data"
        write_dataset(
            root,
            layout="risbench",
            samples=args.samples + 8,
            splits=(args.samples, 4, 4),
            size=args.size,
            seed=0,
        )
        rows = []
        for procs in (1, 2):
            for cache in (False, True):
                figures = measure(
                    root, work, size=args.size, steps=args.steps, procs=procs, cache=cache
                )
                rows.append((procs, cache, figures))
    print(f"tiny preset, {args.size}² input, global batch 8, 1 thread per process")
    print(f"{'processes':>9} | {'latents':>8} | {'samples/s':>9} | {'run s':>6}")
    for procs, cache, figures in rows:
        print(
            f"{procs:>9} | {'cached' if cache else 'VAE':>8} | "
            f"{figures['samples_per_s']:>9.2f} | {figures['seconds']:>6.1f}"
        )


if __name__ == "__main__":
    main()
