"""Options shared by several commands, so that a flag means the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")
]
PretrainedOption = Annotated[
    Path | None,
    typer.Option(
        "--pretrained",
        help="Local Stable Diffusion 1.5 folder in the diffusers layout (unet/, vae/, "
        "text_encoder/, tokenizer/). Default: $DIFFRIS_SD15, then <diffris home>/stable-diffusion-v1-5.",
        file_okay=False,
    ),
]
