"""What ``benchmarks/gpu.py`` measures, its tables and its JSON (a part of that script)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setup:
    """What one run measures (``--smoke`` swaps in the tiny presets and small sizes)."""

    device: str
    models: tuple[str, ...]
    precisions: tuple[str, ...]
    prompt_counts: tuple[int, ...]
    tile: int
    batch: int
    micro_batch: int
    budget_s: float
    min_batches: int
    warmup: int
    compile: bool
    peak_tflops: float
    matmul_n: int
    tiny_backbone: bool
    train_size: int
    train_steps: int
    extra_rows: bool


@dataclass
class Report:
    """Everything measured, as printed and as written with ``--json``."""

    environment: dict[str, Any] = field(default_factory=dict)
    matmul_tflops: dict[str, float] = field(default_factory=dict)
    flops: list[dict[str, Any]] = field(default_factory=list)
    segment: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def print_tables(report: Report, setup: Setup) -> None:
    """The run's tables, as README would carry them."""
    env = report.environment
    print(
        f"{env['device_name']} ({setup.device}), torch {env['torch']}, tile {setup.tile}², "
        f"batch {setup.batch}, micro-batch {setup.micro_batch}"
        f"{', torch.compile' if setup.compile else ''}"
    )
    matmul = ", ".join(f"{k} {v:.3g}" for k, v in report.matmul_tflops.items())
    print(f"matmul {setup.matmul_n}³: {matmul} TFLOP/s; nominal peak {setup.peak_tflops:g}")
    kinds = env.get("attention", {}).items()
    print("attention: " + "; ".join(f"{m}: {', '.join(k)}" for m, k in kinds))
    print()
    print(
        f"{'model':<13} | {'text/prompt':>11} | {'image/tile':>10} | {'decode/pair':>11} | "
        f"{'tile, 1 prompt':>14}  (GFLOP)"
    )
    for row in report.flops:
        print(
            f"{row['model']:<13} | {row['text']:>11.2f} | {row['image']:>10.2f} | "
            f"{row['decode']:>11.2f} | {row['tile_1_prompt']:>14.2f}"
        )
    print()
    heads = (
        "model",
        "prec",
        "P",
        "layout",
        "batch",
        "micro",
        "tiles/s",
        "ms/tile",
        "TFLOP/s",
        "% peak",
        "% matmul",
        "peak GiB",
        "syncs",
    )
    widths = (13, 4, 2, 6, 5, 5, 8, 8, 8, 6, 8, 8, 5)
    print(" | ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    for row in report.segment:
        cells = (
            row["model"],
            row["precision"],
            row["prompts"],
            row["layout"],
            row["batch"],
            row["micro_batch"],
            f"{row['tiles_per_s']:.2f}",
            f"{row['ms_per_tile']:.1f}",
            f"{row['tflops']:.3g}",
            f"{row['pct_of_peak']:.1f}",
            f"{row['pct_of_matmul']:.1f}",
            "-" if row["peak_gib"] is None else f"{row['peak_gib']:.1f}",
            "-" if row["syncs_per_batch"] is None else row["syncs_per_batch"],
        )
        print(" | ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    if report.training:
        print()
        print(
            f"{'training':<17} | {'latents':>7} | {'samples/s':>9} | {'ms/step':>8} | "
            f"{'run s':>6} | {'peak GiB':>8}   (global batch 8, bf16)"
        )
        for row in report.training:
            peak = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.1f}"
            print(
                f"{row['model']:<17} | {row['latents']:>7} | {row['samples_per_s']:>9.2f} | "
                f"{row['ms_per_step']:>8.1f} | {row['run_s']:>6.1f} | {peak:>8}"
            )
    for error in report.errors:
        print(f"FAILED {error}")
    print(f"\ntotal {env['total_s']:.0f} s")


def save(report: Report, path: Path | None) -> None:
    """Write ``report`` as JSON to ``path`` (if given)."""
    if path is not None:
        path.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
