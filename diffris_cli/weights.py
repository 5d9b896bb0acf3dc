"""``diffris weights``: fetch pretrained backbone weights, only on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from diffris.errors import InputError
from diffris.models.rsrefseg.lookup import FOUNDATIONS
from diffris.paths import SD15_ENV, SD15_REPO_ID
from diffris.weights import Downloaded, Variant, download_foundation, download_sd15
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

#: Backbones this command can fetch: Stable Diffusion for DiffRIS, SigLIP and SAM for RSRefSeg.
NAMES = ("sd15", "siglip", "sam-b", "sam-l")


@app.command("download", cls=DiffrisCommand)
@user_errors
def download(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="What to fetch: sd15 (DiffRIS), siglip, sam-b, sam-l (RSRefSeg's SigLIP "
            "so400m-patch14-384, SAM ViT-B for rsrefseg-b, SAM ViT-L for rsrefseg-l).",
        ),
    ],
    repo_id: Annotated[
        str | None,
        typer.Option(
            "--repo-id",
            help=f"Hugging Face Hub repository. Default: {SD15_REPO_ID} (sd15), "
            "google/siglip-so400m-patch14-384, facebook/sam-vit-base, facebook/sam-vit-large.",
        ),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="Branch, tag or commit (default: the main branch)."),
    ] = None,
    variant: Annotated[
        str,
        typer.Option(
            "--variant", help="sd15 only: fp32 (~4.2 GB) or fp16 (~2.1 GB; loaded as fp32)."
        ),
    ] = "fp32",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            file_okay=False,
            help="Folder to write. Default: <diffris home>/stable-diffusion-v1-5 (or "
            "siglip-so400m-patch14-384, sam-vit-base, sam-vit-large), where diffris looks "
            "without --pretrained.",
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Download backbone weights, safetensors only: Stable Diffusion 1.5 (UNet, VAE, CLIP
    text, tokenizer), or RSRefSeg's SigLIP (with its tokenizer) or SAM.

    Files come through the Hugging Face cache (reused; HF_HUB_OFFLINE=1 reads only the cache).

    The default folder is where segment, train, evaluate and info look without --pretrained.

    Example: diffris weights download sd15; diffris weights download siglip
    """
    if name not in NAMES:
        raise InputError(f"unknown weights {name!r}; choose one of: {', '.join(NAMES)}")
    chosen = parse_enum(Variant, variant, "--variant")
    if name == "sd15":
        result = download_sd15(
            repo_id=repo_id or SD15_REPO_ID,
            revision=revision,
            variant=chosen,
            output=output,
            overwrite=overwrite,
        )
        title, hint = "Stable Diffusion 1.5", f"--pretrained {{}} or set {SD15_ENV}={{}}"
    else:
        if chosen is not Variant.FP32:
            raise InputError(
                f"--variant {variant} applies to sd15 only; {name} is fetched as float32"
            )
        result = download_foundation(
            name, repo_id=repo_id, revision=revision, output=output, overwrite=overwrite
        )
        part = FOUNDATIONS[name]
        title, hint = part.title, f"--pretrained {part.key}={{}} or set {part.env}={{}}"
    _report(result, title, hint, as_json)


def _report(result: Downloaded, title: str, hint: str, as_json: bool) -> None:
    """Where the folder went, and how to point diffris at it when it is not the default."""
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
            f"{result.folder} already holds {title}; nothing fetched "
            "(pass --overwrite to fetch it again)",
            highlight=False,
        )
    else:
        out_console.print(
            f"{title} ({result.repo_id}@{result.commit[:12]}) written to {result.folder}",
            highlight=False,
        )
    if not result.default:
        out_console.print(
            "diffris does not look there by default: pass "
            + hint.format(result.folder, result.folder),
            highlight=False,
        )
