"""``diffris info``: versions, devices, where weights are looked for and the cache."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from diffris.info import collect_info
from diffris.paths import SD15_DOWNLOAD_COMMAND, SD15_ENV
from diffris_cli.console import out_console
from diffris_cli.errors import user_errors
from diffris_cli.options import JsonOption, PretrainedOption


@user_errors
def info(
    pretrained: PretrainedOption = None,
    torch_devices: Annotated[
        bool,
        typer.Option(
            "--devices",
            help="Ask torch which devices it can use (CUDA, MPS, bf16); takes a few seconds.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show versions, devices, where the backbone weights are looked for, and the cache.

    Stable Diffusion 1.5 for DiffRIS; SigLIP and SAM ViT-B/ViT-L for RSRefSeg.

    Without --devices, the GPUs are the ones the NVIDIA driver lists, found without loading
    torch, so info answers at once.

    Examples:

      diffris info --devices --pretrained /models/stable-diffusion-v1-5

      diffris info --pretrained siglip=/models/siglip --pretrained sam=/models/sam-vit-base
    """
    from diffris.models.names import parse_pretrained

    report = collect_info(parse_pretrained(pretrained), torch_devices=torch_devices)
    if as_json:
        out_console.print_json(json.dumps(report))
        return
    versions = Table(title="Versions", show_header=False)
    for name, version in report["versions"].items():
        versions.add_row(name, version)
    devices = Table(title="Devices")
    for column in ("device", "name", "details"):
        devices.add_column(column)
    for device in report["devices"]:
        details = ", ".join(f"{k}={v}" for k, v in device.items() if k not in ("device", "name"))
        devices.add_row(device["device"], str(device["name"]), details)
    weights = Table(title="Stable Diffusion 1.5 weights (searched in this order)")
    weights.add_column("folder", overflow="fold")
    weights.add_column("status")
    for lookup in report["stable_diffusion"]:
        colour = "green" if lookup["found"] else "yellow"
        weights.add_row(lookup["path"], Text(lookup["status"], style=colour))
    if report["devices_from"] == "driver":
        devices.caption = "GPUs as the NVIDIA driver lists them; --devices asks torch"
    out_console.print(
        versions, devices, weights, _rsrefseg_table(report["rsrefseg"]), _models_table(report)
    )
    out_console.print(f"diffris home: {report['home']}")
    out_console.print(f"checkpoint cache: {report['checkpoint_cache']}")
    if not any(lookup["found"] for lookup in report["stable_diffusion"]):
        out_console.print(
            f"No usable Stable Diffusion folder found: run '{SD15_DOWNLOAD_COMMAND}' to fetch "
            f"it into {report['stable_diffusion'][-1]['path']}, or pass --pretrained DIR or set "
            f"{SD15_ENV} to a folder with unet/, vae/, text_encoder/, tokenizer/ and safetensors "
            "weights. The 'tiny' preset needs none.",
            highlight=False,
        )
    if missing := [part for part in report["rsrefseg"].values() if not part["uses"]]:
        commands = ", ".join(f"'{part['download']}'" for part in missing)
        out_console.print(
            f"RSRefSeg: run {commands} to fetch what is missing into the cache, or set "
            f"{', '.join(sorted({part['env'] for part in missing}))} to local Hugging Face "
            "folders (safetensors). The 'rsrefseg-tiny' preset needs none.",
            highlight=False,
        )


def _rsrefseg_table(parts: dict[str, Any]) -> Table:
    """Per part (SigLIP, SAM ViT-B, SAM ViT-L): each folder searched, and what is there."""
    table = Table(
        title="RSRefSeg weights (searched in this order; the first named or present is used)"
    )
    table.add_column("part")
    table.add_column("source")
    table.add_column("folder", overflow="fold")
    table.add_column("status")
    for part in parts.values():
        label = f"{part['title']} ({', '.join(part['presets'])})"
        for lookup in part["folders"]:
            colour = "green" if lookup["found"] else "yellow"
            table.add_row(
                label, lookup["source"], lookup["path"], Text(lookup["status"], style=colour)
            )
            label = ""
    return table


def _models_table(report: dict[str, Any]) -> Table:
    """Every preset --model takes: its architecture, the weights it needs, whether found."""
    table = Table(title="Model presets (--model NAME; or a trained-model folder of either)")
    for column in ("preset", "architecture", "weights", "status"):
        table.add_column(column)
    for entry in report["models"]:
        needs = ", ".join(entry["needs"]) or "none (random demo backbone)"
        status = (
            Text("ready", style="green")
            if entry["ready"]
            else Text("weights missing", style="yellow")
        )
        table.add_row(entry["preset"], entry["architecture"], needs, status)
    return table
