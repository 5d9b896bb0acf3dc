"""Each part of one 512² tile through the tiny models on this CPU: time, GFLOP and % of peak.

Prints one table: for every part of ``tiny`` (DiffRIS: text, VAE encoder, UNet, decoder) and of
``rsrefseg-tiny`` (RSRefSeg: text, SAM vision, SigLIP vision, decode), its GFLOP (counted by
``torch.utils.flop_counter.FlopCounterMode``: matmuls, convolutions, attention; 2 per
multiply-add), then for each mode its time (ms), GFLOP/s and percentage of this CPU's fp32
matmul peak, measured in the same run at the same thread count (a 2048² ``torch.mm``). Modes:

- ``fp32 NCHW``: the model as built, contiguous tensors (what ran before the fast path);
- ``fp32 default``: the default inference path (:func:`diffris.models.fast_path.
  prepare_for_inference`: channels_last on a CPU); the last column is its speed-up;
- ``bf16``: the default path under ``--precision bf16`` autocast.

"tile" sums the per-tile parts (text runs once per run, not per tile). Times are the best of
``--runs`` (after one warm-up), the modes interleaved run by run so that other work on a shared
machine slows them alike; the peak is the best of its runs too. With one thread the clock is
this thread's CPU time (``time.thread_time``: the time it computed, which other processes on a
shared machine do not inflate by descheduling it); with more, wall time (``--clock`` chooses). With ``--parameters`` it also
prints the frozen and trainable parameter counts of the ``tiny`` and ``sd15`` presets.

Usage: ``python benchmarks/model_forward.py [--runs 5] [--size 512] [--threads 1] [--clock cpu]``
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffris.devices import Precision, autocast
from diffris.models.fast_path import prepare_for_inference, to_inference_layout
from diffris.models.loading import load_model
from diffris.models.rsrefseg.model import SAM_MEAN, SAM_STD, SIGLIP_MEAN, SIGLIP_STD

CPU = torch.device("cpu")
PROMPT = "the large building next to the parking lot"
MODES = ("fp32 NCHW", "fp32 default", "bf16")
Part = tuple[str, Callable[[], Any]]


def diffris_parts(model: Any, pixels: torch.Tensor) -> list[Part]:
    """DiffRIS's steps, each fed the previous step's real output."""
    tokens = model.tokenize([PROMPT])
    text = model.encode_text(tokens)
    latents = model.encode_image(pixels)
    features = model.image_features(latents, text)
    size = tuple(pixels.shape[-2:])
    return [
        ("text", lambda: model.encode_text(tokens)),
        ("VAE encoder", lambda: model.encode_image(pixels)),
        ("UNet", lambda: model.image_features(latents, text)),
        ("decoder", lambda: model.decoder(features, text.refined, text.mask, size)),
    ]


def rsrefseg_parts(model: Any, pixels: torch.Tensor) -> list[Part]:
    """RSRefSeg's steps: its two image towers apart (their inputs as encode_image makes them)."""
    from diffris.models.rsrefseg.model import _resize_normalise

    tokens = model.tokenize([PROMPT])
    text = model.encode_text(tokens)
    unit = (pixels.float() + 1) / 2
    sam_in = _resize_normalise(unit, model.config.sam_size, SAM_MEAN, SAM_STD)
    clip_in = _resize_normalise(unit, model.config.siglip_size, SIGLIP_MEAN, SIGLIP_STD)
    image = model.encode_image(pixels)
    return [
        ("text", lambda: model.encode_text(tokens)),
        ("SAM vision", lambda: model.sam.vision_encoder(sam_in)),
        ("SigLIP vision", lambda: model.siglip.vision_model(pixel_values=clip_in)),
        ("decode", lambda: model.decode(image, text)),
    ]


PARTS: dict[str, Callable[[Any, torch.Tensor], list[Part]]] = {
    "tiny": diffris_parts,
    "rsrefseg-tiny": rsrefseg_parts,
}


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}


def matmul_peak(runs: int, clock: Callable[[], float], side: int = 2048) -> float:
    """Best fp32 GFLOP/s of a ``side``² matmul at the current thread count."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(runs):
        start = clock()
        torch.mm(a, b)
        best = min(best, clock() - start)
    return 2 * side**3 / best / 1e9


def gflop_of(part: Callable[[], Any]) -> float:
    """GFLOP of one call, as FlopCounterMode counts them (matmuls, convolutions, attention)."""
    with FlopCounterMode(display=False) as counter:
        part()
    return counter.get_total_flops() / 1e9


def measure(
    name: str, size: int, runs: int, clock: Callable[[], float]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """GFLOP per part, and the best seconds per part of each mode."""
    torch.manual_seed(0)
    # no parameter asks for gradients: FlopCounterMode's module tracker would hook them
    contiguous = load_model(name).eval().requires_grad_(False)
    default = prepare_for_inference(copy.deepcopy(contiguous), CPU)
    images = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    pixels = contiguous.preprocess(images)
    setups = {
        "fp32 NCHW": (contiguous, pixels, Precision.FP32),
        "fp32 default": (default, to_inference_layout(pixels), Precision.FP32),
        "bf16": (default, to_inference_layout(pixels), Precision.BF16),
    }
    parts: dict[str, list[Part]] = {}
    for mode, (model, mode_pixels, precision) in setups.items():
        with torch.inference_mode(), autocast(CPU, precision):
            parts[mode] = PARTS[name](model, mode_pixels)
    with torch.inference_mode():
        gflop = {part: gflop_of(call) for part, call in parts["fp32 NCHW"]}
    best = {mode: dict.fromkeys(gflop, float("inf")) for mode in MODES}
    for _ in range(runs + 1):  # the first run warms up: its times count only if best
        for mode, (_, _, precision) in setups.items():
            for part, call in parts[mode]:
                with torch.inference_mode(), autocast(CPU, precision):
                    start = clock()
                    call()
                    elapsed = clock() - start
                best[mode][part] = min(best[mode][part], elapsed)
    return gflop, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per part (best of)")
    parser.add_argument("--size", type=int, default=512, help="tile side in pixels")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--models", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--parameters", action="store_true", help="also print parameter counts")
    parser.add_argument(
        "--clock", choices=list(CLOCKS), help="cpu (thread CPU time; 1 thread only) or wall"
    )
    args = parser.parse_args()
    clock_name = args.clock or ("cpu" if args.threads == 1 else "wall")
    if clock_name == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures one thread; use --clock wall with --threads > 1")
    clock = CLOCKS[clock_name]
    torch.set_num_threads(args.threads)

    results = {name: measure(name, args.size, args.runs, clock) for name in args.models}
    peak = max(matmul_peak(args.runs * 4, clock), matmul_peak(args.runs * 4, clock))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"one {args.size}² tile, batch 1, {args.threads} thread(s), best of {args.runs} runs "
        f"({clock_name} time); fp32 matmul peak {peak:.0f} GFLOP/s (2048² mm); load {load}"
    )
    head = f"{'model':<13} | {'part':<13} | {'GFLOP':>6}"
    cells = " | ".join(f"{mode + ' ms':>16} {'GF/s':>6} {'%pk':>4}" for mode in MODES)
    print(f"{head} | {cells} | {'speed-up':>8}")
    print("-" * (len(head) + 3 + len(cells) + 11))
    for name, (gflop, best) in results.items():
        rows = dict(gflop)
        rows["tile"] = sum(value for part, value in gflop.items() if part != "text")
        for mode in MODES:
            best[mode]["tile"] = sum(t for part, t in best[mode].items() if part != "text")
        for part, flops in rows.items():
            line = f"{name:<13} | {part:<13} | {flops:6.2f}"
            for mode in MODES:
                seconds = best[mode][part]
                rate = flops / seconds
                line += f" | {seconds * 1000:16.1f} {rate:6.1f} {100 * rate / peak:4.0f}"
            speedup = best["fp32 NCHW"][part] / best["fp32 default"][part]
            print(f"{line} | {speedup:7.2f}x")
    if args.parameters:
        print_parameters()


def print_parameters() -> None:
    """Frozen and trainable parameters of ``tiny`` and ``sd15`` (built on ``meta``)."""
    from diffris.models.diffris.build import build_diffris, build_on_meta

    print()
    print("parameters (millions), default CP-adapter and PCMRD")
    print(
        f"{'preset':>6} | {'frozen':>9} | {'trainable':>9} | {'feature channels':>22} | text width"
    )
    print("-" * 7 + "+" + "-" * 11 + "+" + "-" * 11 + "+" + "-" * 24 + "+" + "-" * 11)
    for name, built in (("tiny", build_diffris("tiny")), ("sd15", build_on_meta("sd15"))):
        print(
            f"{name:>6} | {built.frozen_parameter_count() / 1e6:9.2f} | "
            f"{built.trainable_parameter_count() / 1e6:9.2f} | "
            f"{str(built.config.backbone.feature_channels):>22} | "
            f"{built.config.backbone.text_dim:>10}"
        )


if __name__ == "__main__":
    main()
