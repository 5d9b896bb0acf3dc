"""Training samples/s for ``benchmarks/gpu.py``: ``diffris.train.train`` on a random SD-1.5."""

from __future__ import annotations

import functools
import os
import statistics
import time
from pathlib import Path
from typing import Any

from gpu_report import Report, Setup


def write_random_sd(folder: Path, device, *, tiny: bool) -> Path:
    """A diffusers-layout Stable Diffusion folder with the classes' random initialisation: at
    SD-1.5's sizes, or (``tiny``) the tiny preset's, which load through the same ``sd15`` path."""
    import torch

    from diffris.models.diffris.backbone import save_sd_components
    from diffris.models.diffris.components import components_from_configs, sd15_component_configs
    from diffris.models.diffris.tiny import tiny_component_configs

    configs = tiny_component_configs() if tiny else sd15_component_configs()
    with torch.device(device):
        components = components_from_configs(configs)
    return save_sd_components(components, folder)


def measure_training(setup: Setup, work: Path, report: Report) -> None:
    """Samples/s of ``diffris.train.train`` at global batch 8, with and without cached latents."""
    import torch

    from diffris.data.synthetic import write_dataset
    from diffris.devices import Precision
    from diffris.train import LaunchOptions, TrainConfig, train

    device = torch.device(setup.device)
    cuda = device.type == "cuda"
    started = time.perf_counter()
    samples = 8 * (setup.train_steps + 2)
    root = work / "data"
    write_dataset(
        root,
        layout="risbench",
        samples=samples + 8,
        splits=(samples, 4, 4),
        size=setup.train_size,
        seed=0,
    )
    pretrained = str(write_random_sd(work / "sd15", device, tiny=setup.tiny_backbone))
    heads: dict[str, Any] = {}
    if setup.tiny_backbone:  # the tiny preset's heads too: seconds, not minutes, on a CPU
        from diffris.models.diffris.tiny import tiny_head_configs

        heads = dict(zip(("cp_adapter", "pcmrd"), tiny_head_configs(), strict=True))
    prepared = time.perf_counter() - started
    for cache in (False, True):
        config = TrainConfig(
            dataset="synthetic",
            data_root=str(root),
            preset="sd15",
            pretrained=pretrained,
            epochs=1000,
            batch_size=8,
            device_batch=8,
            image_size=setup.train_size,
            precision=Precision.BF16,
            cache_latents=cache,
            val_split="",
            **heads,
        )
        launch = LaunchOptions(
            gpus=1 if cuda else 0,
            workers=min(4, os.cpu_count() or 1) if cuda else 0,
            threads=None if cuda else 1,
            save_every=0,
            max_steps=setup.train_steps,
        )
        stamps: list[float] = []
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        result = train(
            config,
            work / f"run-{cache}",
            launch=launch,
            overwrite=True,
            on_event=functools.partial(_stamp, stamps),
        )
        steps = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=False)][1:]  # 3rd on
        step_s = statistics.median(steps) if steps else float("nan")
        report.training.append(
            {
                "model": "sd15" + (" (tiny sizes)" if setup.tiny_backbone else ""),
                "latents": "cached" if cache else "VAE",
                "samples_per_s": round(8 / step_s, 2),
                "ms_per_step": round(1e3 * step_s, 1),
                "steps_timed": len(steps),
                "run_s": result.seconds,
                "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                if cuda
                else None,
            }
        )
    report.environment["training_setup_s"] = round(prepared, 1)


def _stamp(stamps: list[float], _event: object) -> None:
    """Note when a training event arrived (a step's end: its loss was read, so it is done)."""
    stamps.append(time.perf_counter())
