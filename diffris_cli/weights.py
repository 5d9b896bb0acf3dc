"""``diffris weights``: fetch pretrained backbone weights, only on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from diffris.errors import InputError
from diffris.paths import SD15_ENV, SD15_REPO_ID
from diffris.weights import Variant, download_sd15
from diffris_cli.console import out_console
from diffris_cli.errors import user_errors
from diffris_cli.helptext import DiffrisCommand, DiffrisGroup
from diffris_cli.options import JsonOption, OverwriteOption
from diffris_cli.parsing import parse_enum

app = typer.Typer(
    name="weights",
    help="Fetch pretrained backbone weights (nothing is ever downloaded otherwise).",
    no_args_is_help=True,
    cls=DiffrisGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: Backbones this command can fetch.
NAMES = ("sd15",)


@app.command("download", cls=DiffrisCommand)
@user_errors
def download(
    name: Annotated[str, typer.Argument(metavar="NAME", help="What to fetch: sd15.")],
    repo_id: Annotated[
        str, typer.Option("--repo-id", help="Hugging Face Hub repository in the diffusers layout.")
    ] = SD15_REPO_ID,
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="Branch, tag or commit (default: the main branch)."),
    ] = None,
    variant: Annotated[
        str,
        typer.Option("--variant", help="fp32 (~4.2 GB) or fp16 (~2.1 GB; loaded as fp32)."),
    ] = "fp32",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            file_okay=False,
            help="Folder to write. Default: <diffris home>/stable-diffusion-v1-5, where diffris "
            "looks without --pretrained.",
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Download Stable Diffusion 1.5: UNet, VAE, CLIP text, tokenizer (safetensors only).

    Files come through the Hugging Face cache (reused; HF_HUB_OFFLINE=1 reads only the cache).

    The default folder is where segment, train, evaluate and info look without --pretrained.

    Example: diffris weights download sd15
    """
    if name not in NAMES:
        raise InputError(f"unknown weights {name!r}; choose one of: {', '.join(NAMES)}")
    result = download_sd15(
        repo_id=repo_id,
        revision=revision,
        variant=parse_enum(Variant, variant, "--variant"),
        output=output,
        overwrite=overwrite,
    )
    if as_json:
        summary = {
            "folder": str(result.folder),
            "repo_id": result.repo_id,
            "commit": result.commit or None,
            "default": result.default,
            "already": result.already,
        }
        out_console.print_json(json.dumps(summary))
        return
    if result.already:
        out_console.print(
            f"{result.folder} already holds Stable Diffusion 1.5; nothing fetched "
            "(pass --overwrite to fetch it again)",
            highlight=False,
        )
    else:
        out_console.print(
            f"Stable Diffusion 1.5 ({result.repo_id}@{result.commit[:12]}) written to "
            f"{result.folder}",
            highlight=False,
        )
    if not result.default:
        out_console.print(
            f"diffris does not look there by default: pass --pretrained {result.folder} or set "
            f"{SD15_ENV}={result.folder}",
            highlight=False,
        )
