r"""GPU throughput of ``segment``'s tile path and of training, at SD-1.5 and RSRefSeg-b sizes.

Runs on a CUDA machine with no network and no weights: ``sd15`` (DiffRIS on Stable Diffusion
1.5 + CLIP ViT-L/14) and ``rsrefseg-b`` (SigLIP so400m + SAM ViT-B) are built from their configs
on the ``meta`` device and filled with random weights on the GPU, as ``prompt_cost.py
--real-sizes`` does on the CPU. It measures, in one run:

1. the large bf16 and fp16 matmul TFLOP/s this GPU reaches (the practical ceiling);
2. the FLOPs of one 512² tile, counted with ``torch.utils.flop_counter.FlopCounterMode``: text
   per prompt, image features per tile, decode per (tile, prompt) (the issue's figure for
   DiffRIS: 1,933 GFLOP per tile with one prompt);
3. tiles/s of ``ModelPredictor.predict`` (what ``segment`` calls per batch of tiles: the
   model's share of a run; reading and writing run beside it on the CPU) on uint8 batches of
   512² tiles, at bf16 and fp16 with 1 and 8 prompts: ms per tile, TFLOP/s reached
   and its share of the nominal peak (``--peak-tflops``, default 790: the issue's H100/H200 bf16
   dense figure; the SXM datasheets say 989) and of the measured matmul, peak GPU memory
   (``torch.cuda.max_memory_allocated``, weights included) and the host syncs of one batch
   (``torch.cuda.set_sync_debug_mode``: 1 is the copy-out the caller waits for). Three extra
   rows for the first model: NCHW instead of the predictor's channels-last on CUDA,
   ``segment``'s default ``--batch-size 4`` (the GPU micro-batch is 8: each encode then pads 4
   tiles to 8), and batch 4 in micro-batches of 4;
4. training samples/s (``diffris.train.train``, sd15, global batch 8, bf16) with and without
   ``--cache-latents``, from the wall time between step events (the step's loss read is its
   sync); the random SD-1.5 is written once as a diffusers folder and loaded by the trainer.

Prints one table per part and, with ``--json PATH``, writes them all as JSON (saved after
each part, so a run cut short keeps what it measured). A part that fails is reported (a
``FAILED`` line, ``errors`` in the JSON, exit status 1) and the next part still runs.

On a lent machine (one H100/H200, CUDA PyTorch, the project installed), from the repository
root::

    timeout 480 python benchmarks/gpu.py --json gpu.json

Expected: 3-5 minutes on one H200 (an estimate until it has run), of which about half is the
training part (a 4 GB random SD-1.5 folder written, then loaded and fingerprinted by each of its
two runs); ``--no-train`` leaves it out. Then, if time is left::

    timeout 480 python benchmarks/gpu.py --compile --models sd15 --precisions bf16 --no-train \
        --json gpu-compiled.json

adds ``torch.compile`` (:mod:`diffris.models.compiling`): the first two batches of each
precision compile (``warmup_s`` in the JSON) and are not timed; expect a few minutes of
compilation. Each setting is timed for ``--budget-s`` seconds (default 3, at least 3 batches)
after its warm-up. ``--device cpu --smoke`` runs the same code on the tiny presets (64² tiles,
bf16, 1 and 2 prompts, 3 training steps at 64²) in well under a minute;
``tests/benchmarks/test_gpu_script.py`` runs it.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from gpu_report import Report, Setup, print_tables, save
from gpu_training import measure_training
from prompt_cost import PROMPTS, real_size_model  # benchmarks/ is this script's folder


def layout_of(model) -> str:
    """``NHWC`` when the model's convolution weights are channels-last, else ``NCHW``."""
    import torch

    weight = next(p for p in model.parameters() if p.dim() == 4 and min(p.shape[1:]) > 1)
    return "NHWC" if weight.is_contiguous(memory_format=torch.channels_last) else "NCHW"


def synchronize(device) -> None:
    """Wait for ``device`` (timing only)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device, dtype, n: int, seconds: float = 1.0) -> float:
    """TFLOP/s of an ``n`` x ``n`` x ``n`` matmul in ``dtype``: the best of timed rounds."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up (cuBLAS picks its kernel)
    synchronize(device)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(5):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - started) / 5)
    return 2 * n**3 / best / 1e12


def random_model(preset: str, device):
    """``preset`` at its real sizes, random weights on ``device``, frozen (timing only)."""
    return real_size_model(preset, device)


def attention_kinds(model) -> list[str]:
    """How the model's attention layers run: diffusers processors and transformers'
    ``attn_implementation`` (``AttnProcessor2_0`` and ``sdpa`` are PyTorch's SDPA)."""
    kinds = set()
    for module in model.modules():
        if hasattr(module, "processor"):
            kinds.add(type(module.processor).__name__)
        config = getattr(module, "config", None)
        if (kind := getattr(config, "_attn_implementation", None)) is not None:
            kinds.add(str(kind))
    return sorted(kinds)


def count_flops(model, tile: int, device) -> dict[str, float]:
    """GFLOP of one prompt's text, one tile's image features and one (tile, prompt) decode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    pixels = model.preprocess(torch.randint(0, 256, (1, 3, tile, tile), dtype=torch.uint8))
    counts = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            text = model.encode_text(PROMPTS[:1])
        counts["text"] = counter.get_total_flops() / 1e9
        with FlopCounterMode(display=False) as counter:
            image = model.encode_image(pixels.to(device))
        counts["image"] = counter.get_total_flops() / 1e9
        with FlopCounterMode(display=False) as counter:
            model.decode(image, text)
        counts["decode"] = counter.get_total_flops() / 1e9
    counts["tile_1_prompt"] = counts["image"] + counts["decode"]
    return counts


def host_syncs(predictor, tiles) -> int | None:
    """Host syncs CUDA reports during one ``predict`` call (None off CUDA)."""
    import torch

    if predictor.device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            predictor.predict(tiles)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)


def time_segment(
    model,
    preset: str,
    precision: str,
    prompts: int,
    setup: Setup,
    flops: dict[str, float],
    *,
    batch: int | None = None,
    micro_batch: int | None = None,
    layout: str = "default",
    ceiling: float,
) -> dict[str, Any]:
    """One row: tiles/s of ``ModelPredictor.predict`` over batches of random uint8 tiles."""
    import numpy as np
    import torch

    from diffris.data.prompts import prompts_from_texts
    from diffris.devices import Precision
    from diffris.inference.predictor import ModelPredictor

    device = torch.device(setup.device)
    batch = batch or setup.batch
    rng = np.random.default_rng(0)
    batches = [
        rng.integers(0, 256, (batch, 3, setup.tile, setup.tile), dtype=np.uint8) for _ in range(4)
    ]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    predictor = ModelPredictor(
        model,
        prompts_from_texts(PROMPTS[:prompts]),
        device=device,
        precision=Precision(precision),
        micro_batch=micro_batch or setup.micro_batch,
    )
    if layout == "NCHW":  # the comparison row: the predictor's CUDA default undone
        model.to(memory_format=torch.contiguous_format)
        predictor.memory_format = torch.contiguous_format
    started = time.perf_counter()
    for i in range(setup.warmup):
        predictor.predict(batches[i % len(batches)])
    synchronize(device)
    warmup_s = time.perf_counter() - started
    done, started = 0, time.perf_counter()
    while done < setup.min_batches or time.perf_counter() - started < setup.budget_s:
        predictor.predict(batches[done % len(batches)])  # returns host arrays: synced
        done += 1
    seconds = time.perf_counter() - started
    syncs = host_syncs(predictor, batches[0])
    if layout == "NCHW":
        model.to(memory_format=predictor_format(device))
    tiles_per_s = done * batch / seconds
    tflops = tiles_per_s * (flops["image"] + prompts * flops["decode"]) / 1e3
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "model": preset,
        "precision": precision,
        "prompts": prompts,
        "layout": layout_of(model),
        "batch": batch,
        "micro_batch": predictor.micro_batch,
        "tiles_per_s": round(tiles_per_s, 3),
        "ms_per_tile": round(1e3 / tiles_per_s, 2),
        "tflops": round(tflops, 4),
        "pct_of_peak": round(100 * tflops / setup.peak_tflops, 1),
        "pct_of_matmul": round(100 * tflops / max(ceiling, 1e-9), 1),
        "peak_gib": None if peak is None else round(peak, 2),
        "syncs_per_batch": syncs,
        "warmup_s": round(warmup_s, 2),
        "batches_timed": done,
    }


def predictor_format(device):
    """The memory format the predictor gives a model on ``device``."""
    from diffris.models.fast_path import inference_memory_format

    return inference_memory_format(device)


def measure_model(preset: str, setup: Setup, report: Report) -> None:
    """Build ``preset`` with random weights, count its FLOPs, time every segment setting."""
    import torch

    device = torch.device(setup.device)
    started = time.perf_counter()
    model = random_model(preset, device)
    built = time.perf_counter() - started
    flops = count_flops(model, setup.tile, device)
    report.flops.append({"model": preset, **{k: round(v, 2) for k, v in flops.items()}})
    report.environment.setdefault("attention", {})[preset] = attention_kinds(model)
    report.environment.setdefault("build_s", {})[preset] = round(built, 1)
    if setup.compile:
        from diffris.models.compiling import compile_parts

        compile_parts(model, dynamic=False)
    for precision in setup.precisions:
        ceiling = report.matmul_tflops[precision]
        for prompts in setup.prompt_counts:
            row = time_segment(model, preset, precision, prompts, setup, flops, ceiling=ceiling)
            report.segment.append(row)
            print_progress(row)
    if setup.extra_rows and preset == setup.models[0]:
        precision, ceiling = setup.precisions[0], report.matmul_tflops[setup.precisions[0]]
        first = setup.prompt_counts[0]
        for extra in (
            {"layout": "NCHW"} if device.type == "cuda" else {},
            {"batch": max(1, setup.micro_batch // 2)},
            {
                "batch": max(1, setup.micro_batch // 2),
                "micro_batch": max(1, setup.micro_batch // 2),
            },
        ):
            if extra:
                row = time_segment(
                    model, preset, precision, first, setup, flops, ceiling=ceiling, **extra
                )
                report.segment.append(row)
                print_progress(row)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()


def print_progress(row: dict[str, Any]) -> None:
    print(
        f"  {row['model']} {row['precision']} {row['prompts']} prompt(s) {row['layout']} "
        f"batch {row['batch']}: {row['tiles_per_s']} tiles/s",
        file=sys.stderr,
        flush=True,
    )


def parse_setup(argv: list[str] | None) -> tuple[Setup, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny presets, small sizes")
    parser.add_argument("--models", help="comma-separated presets (default sd15,rsrefseg-b)")
    parser.add_argument("--precisions", help="autocast precisions (default bf16,fp16)")
    parser.add_argument("--prompts", help="prompt counts (default 1,8)")
    parser.add_argument("--batch-size", type=int, help="tiles per predict call (default 8)")
    parser.add_argument("--budget-s", type=float, help="timed seconds per setting (default 3)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the heavy parts")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="nominal dense peak")
    parser.add_argument("--train-steps", type=int, help="optimiser steps per setting (12)")
    parser.add_argument("--no-train", action="store_true", help="skip the training rows")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    smoke = args.smoke
    setup = Setup(
        device=args.device,
        models=tuple(
            (args.models or ("tiny,rsrefseg-tiny" if smoke else "sd15,rsrefseg-b")).split(",")
        ),
        precisions=tuple((args.precisions or ("bf16" if smoke else "bf16,fp16")).split(",")),
        prompt_counts=tuple(
            int(p) for p in (args.prompts or ("1,2" if smoke else "1,8")).split(",")
        ),
        tile=64 if smoke else 512,
        batch=args.batch_size or (2 if smoke else 8),
        micro_batch=2 if smoke else 8,
        budget_s=args.budget_s if args.budget_s is not None else (0.0 if smoke else 3.0),
        min_batches=1 if smoke else 3,
        warmup=2 if args.compile else 1,
        compile=args.compile,
        peak_tflops=args.peak_tflops,
        matmul_n=256 if smoke else 8192,
        tiny_backbone=smoke,
        train_size=64 if smoke else 512,
        train_steps=args.train_steps or (3 if smoke else 12),
        extra_rows=not args.compile,
    )
    return setup, args


def main(argv: list[str] | None = None) -> Report:
    setup, args = parse_setup(argv)
    import torch

    from diffris.devices import Precision, resolve_device

    began = time.perf_counter()
    device = resolve_device(setup.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every call has the same shapes
    else:
        torch.set_num_threads(1)
    report = Report()
    report.environment.update(
        device_name=torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if device.type == "cuda" else None,
        memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        if device.type == "cuda"
        else None,
        command=" ".join(["python", "benchmarks/gpu.py", *(argv or sys.argv[1:])]),
    )
    for precision in setup.precisions:
        dtype = Precision(precision).dtype
        report.matmul_tflops[precision] = round(
            matmul_tflops(device, dtype, setup.matmul_n, seconds=0.2 if args.smoke else 1.0), 4
        )
    parts: list[tuple[str, Any]] = [
        (preset, functools.partial(measure_model, preset, setup, report)) for preset in setup.models
    ]
    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("DIFFRIS_HOME", str(Path(folder) / "home"))  # fingerprint cache
        if not args.no_train:
            parts.append(
                ("training", functools.partial(measure_training, setup, Path(folder), report))
            )
        for name, part in parts:
            run_part(name, part, report, began, args.json)
    report.environment["total_s"] = round(time.perf_counter() - began, 1)
    print_tables(report, setup)
    save(report, args.json)
    return report


def run_part(name: str, part: Any, report: Report, began: float, path: Path | None) -> None:
    """Run one part; a failure is recorded and the next part runs (a lent machine's minutes
    are not spent twice), and the JSON so far is saved after each part."""
    import traceback

    print(f"[{time.perf_counter() - began:6.0f} s] {name}", file=sys.stderr, flush=True)
    try:
        part()
    except Exception as error:  # recorded, shown, and the run goes on
        traceback.print_exc()
        report.errors.append(f"{name}: {type(error).__name__}: {error}"[:500])
        import gc

        import torch

        gc.collect()  # the failed part's model and activations
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    save(report, path)


if __name__ == "__main__":
    from diffris.errors import DiffrisError

    try:
        failed = bool(main().errors)
    except DiffrisError as error:  # e.g. --device cuda on a machine without one
        sys.exit(f"error: {error}")
    sys.exit(1 if failed else 0)
