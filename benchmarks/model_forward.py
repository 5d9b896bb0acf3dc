"""Time one 512² tile through the tiny DiffRIS model on this CPU, and count parameters.

Prints two tables:

1. median time per 512² tile (batch 1, eval, ``torch.inference_mode``) of each step of the tiny
   preset: text (tokenizer + CLIP + CP-adapter), VAE encoder, UNet (one pass, four decoder
   maps), decoder (PCMRD), and their sum, at 1 and 2 threads;
2. frozen and trainable parameter counts of the ``tiny`` and ``sd15`` presets with the default
   CP-adapter and PCMRD; ``sd15`` is built on the ``meta`` device from its configs (no weights).

Usage: ``python benchmarks/model_forward.py [--runs 7] [--size 512]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from diffris.models.diffris.build import build_diffris, build_on_meta
from diffris.models.diffris.model import DiffRIS

STEPS = ("text", "vae", "unet", "decoder")


@torch.inference_mode()
def time_steps(model: DiffRIS, size: int, runs: int) -> dict[str, float]:
    """Median seconds per step over ``runs`` runs after one warm-up."""
    images = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    prompt = ["the large building next to the parking lot"]
    samples: dict[str, list[float]] = {name: [] for name in (*STEPS, "total")}
    for run in range(runs + 1):
        pixels = model.preprocess(images)
        clock = [time.perf_counter()]
        text = model.encode_text(prompt)
        clock.append(time.perf_counter())
        latents = model.encode_image(pixels)
        clock.append(time.perf_counter())
        features = model.image_features(latents, text)
        clock.append(time.perf_counter())
        model.decoder(features, text.refined, text.mask, (size, size))
        clock.append(time.perf_counter())
        if run == 0:
            continue  # warm-up
        for name, begin, stop in zip(STEPS, clock[:-1], clock[1:], strict=True):
            samples[name].append(stop - begin)
        samples["total"].append(clock[-1] - clock[0])
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per setting (median)")
    parser.add_argument("--size", type=int, default=512, help="tile side in pixels")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_diffris("tiny").eval()
    cores = torch.get_num_threads()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"tiny DiffRIS, one {args.size}² tile, batch 1, median of {args.runs} runs (ms)")
    print(f"(CPU: {os.cpu_count()} cores, load average {load}: other work inflates the times)")
    print(f"{'threads':>7} | " + " | ".join(f"{name:>7}" for name in (*STEPS, "total")))
    print("-" * 8 + "+" + "+".join(["-" * 9] * (len(STEPS) + 1)))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        medians = time_steps(model, args.size, args.runs)
        cells = " | ".join(f"{medians[name] * 1000:7.1f}" for name in (*STEPS, "total"))
        print(f"{threads:>7} | {cells}")
    torch.set_num_threads(cores)

    print()
    print("parameters (millions), default CP-adapter and PCMRD")
    print(
        f"{'preset':>6} | {'frozen':>9} | {'trainable':>9} | {'feature channels':>22} | text width"
    )
    print("-" * 7 + "+" + "-" * 11 + "+" + "-" * 11 + "+" + "-" * 24 + "+" + "-" * 11)
    for name, built in (("tiny", model), ("sd15", build_on_meta("sd15"))):
        print(
            f"{name:>6} | {built.frozen_parameter_count() / 1e6:9.2f} | "
            f"{built.trainable_parameter_count() / 1e6:9.2f} | "
            f"{str(built.config.backbone.feature_channels):>22} | "
            f"{built.config.backbone.text_dim:>10}"
        )


if __name__ == "__main__":
    main()
