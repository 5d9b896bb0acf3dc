"""What diffris sees on this machine: versions, devices, weights and cache locations."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffris import __version__
from diffris.models.names import Pretrained, pretrained_folder
from diffris.models.rsrefseg.lookup import (
    FOUNDATIONS,
    PRESET_FOUNDATIONS,
    candidates,
    inspect_folder,
)
from diffris.paths import checkpoint_cache, diffris_home, inspect_sd_folder, sd15_candidates

#: The foundations each preset loads from local folders, by the names ``info`` reports them
#: under (``sd15``: the Stable Diffusion search; the others: :data:`FOUNDATIONS`). A preset not
#: listed needs none: its frozen weights are random (a demo).
PRESET_WEIGHTS: dict[str, tuple[str, ...]] = {
    "sd15": ("sd15",),
    **{preset: tuple(part.name for part in parts) for preset, parts in PRESET_FOUNDATIONS.items()},
}

_PACKAGES = ("torch", "diffusers", "transformers", "rasterio", "zarr", "dask", "distributed")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _nvidia_gpus() -> list[dict[str, Any]]:
    # What the NVIDIA driver lists (Linux), read without CUDA: importing torch costs seconds.
    gpus = []
    root = Path("/proc/driver/nvidia/gpus")
    for index, folder in enumerate(sorted(root.glob("*")) if root.is_dir() else []):
        fields = {}
        with contextlib.suppress(OSError):
            for line in (folder / "information").read_text().splitlines():
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        gpus.append({"device": f"gpu:{index}", "name": fields.get("Model", "NVIDIA GPU")})
    return gpus


def _cpu() -> dict[str, Any]:
    return {
        "device": "cpu",
        "name": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def _torch_devices() -> list[dict[str, Any]]:
    import torch

    devices: list[dict[str, Any]] = [{**_cpu(), "threads": torch.get_num_threads()}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                {
                    "device": f"cuda:{index}",
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "bf16": torch.cuda.is_bf16_supported(),
                }
            )
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append({"device": "mps", "name": "Apple GPU"})
    return devices


def rsrefseg_weights(pretrained: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Where RSRefSeg's SigLIP, SAM ViT-B and SAM ViT-L are looked for, and what is there.

    Each part lists the folders searched in order (``pretrained``'s ``siglip``/``sam`` folder,
    ``$DIFFRIS_SIGLIP``/``$DIFFRIS_SAM`` where set, then the cache), which ones are usable, and the folder the presets would load (the
    first one named or present decides, as :func:`~diffris.models.rsrefseg.folders.
    resolve_folders` does), or null.
    """
    report = {}
    for name, part in FOUNDATIONS.items():
        searched, chosen = [], None
        for candidate in candidates(part, pretrained):
            lookup = inspect_folder(part, candidate.path)
            if chosen is None and (candidate.given or candidate.path.exists()):
                chosen = str(candidate.path) if lookup.found else ""
            searched.append(
                {
                    "path": str(candidate.path),
                    "source": candidate.source,
                    "found": lookup.found,
                    "problems": list(lookup.problems),
                    "status": "found" if lookup.found else lookup.reason(),
                }
            )
        report[name] = {
            "title": part.title,
            "presets": [p for p, parts in PRESET_FOUNDATIONS.items() if part in parts],
            "folders": searched,
            "uses": chosen or None,
            "download": part.download_command,
            "env": part.env,
        }
    return report


def collect_info(pretrained: Pretrained = None, *, torch_devices: bool = False) -> dict[str, Any]:
    """Everything ``diffris info`` reports, as plain JSON-able values.

    A weights folder is "found" only if the loader would accept it: every sub-folder, each
    with its config and safetensors weights (see :func:`~diffris.paths.inspect_sd_folder`).

    Args:
        pretrained: folders to check first, as ``--pretrained`` gives them (see
            :data:`~diffris.models.names.Pretrained`): a bare folder or ``sd15`` for Stable
            Diffusion, ``siglip``/``sam`` for RSRefSeg's parts.
        torch_devices: ask torch which devices it can use (CUDA, MPS, bf16): seconds of
            import; otherwise the CPU and the GPUs the NVIDIA driver lists.
    """
    import rasterio

    versions = {"diffris": __version__, "python": platform.python_version()}
    versions.update({name: _version(name) for name in _PACKAGES})
    versions["gdal"] = rasterio.__gdal_version__
    weights = []
    for candidate in sd15_candidates(pretrained_folder(pretrained, "sd15", sole=True)):
        lookup = inspect_sd_folder(candidate)
        weights.append(
            {
                "path": str(candidate),
                "found": lookup.found,
                "missing": list(lookup.missing) if candidate.is_dir() else ["folder"],
                # what the loader would refuse: pickle-only weights, a missing config, ...
                "problems": list(lookup.problems),
                "status": "found" if lookup.found else lookup.reason(),
            }
        )
    report: dict[str, Any] = {
        "versions": versions,
        "devices": _torch_devices() if torch_devices else [_cpu(), *_nvidia_gpus()],
        "devices_from": "torch" if torch_devices else "driver",
        "stable_diffusion": weights,
        "rsrefseg": rsrefseg_weights(pretrained if isinstance(pretrained, Mapping) else None),
        "home": str(diffris_home()),
        "checkpoint_cache": str(checkpoint_cache()),
    }
    report["models"] = model_presets(report["stable_diffusion"], report["rsrefseg"])
    return report


def model_presets(
    stable_diffusion: list[dict[str, Any]], rsrefseg: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every ``--model`` preset: its architecture, the weights it needs, whether they are here.

    Args:
        stable_diffusion: the Stable Diffusion search of :func:`collect_info`.
        rsrefseg: :func:`rsrefseg_weights`.

    Returns:
        One entry per preset: ``preset``, ``architecture``, ``demo`` (random frozen weights,
        for tests and demos only), ``needs`` (foundation names) and ``ready`` (all found).
    """
    from diffris.models.names import DEMO_PRESETS, PRESET_ARCHITECTURES

    found = {"sd15": any(lookup["found"] for lookup in stable_diffusion)}
    found.update({name: bool(part["uses"]) for name, part in rsrefseg.items()})
    return [
        {
            "preset": preset,
            "architecture": architecture,
            "demo": preset in DEMO_PRESETS,
            "needs": list(PRESET_WEIGHTS.get(preset, ())),
            "ready": all(found.get(name, False) for name in PRESET_WEIGHTS.get(preset, ())),
        }
        for preset, architecture in PRESET_ARCHITECTURES.items()
    ]
