"""``diffris synth``: synthetic benchmark datasets and large georeferenced scenes.

Both are seeded: the same arguments write byte-identical files, so a synthetic benchmark can be
shared as a command line instead of a download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from diffris.errors import InputError, OutputExistsError
from diffris_cli.console import out_console
from diffris_cli.errors import user_errors
from diffris_cli.helptext import DiffrisCommand, DiffrisGroup
from diffris_cli.options import JsonOption, OverwriteOption, QuietOption
from diffris_cli.parsing import parse_enum, parse_numbers

app = typer.Typer(
    name="synth",
    help="Write synthetic referring-segmentation data: benchmark-layout datasets and scenes.",
    no_args_is_help=True,
    cls=DiffrisGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SeedOption = Annotated[int, typer.Option("--seed", help="The same seed writes identical files.")]


def parse_splits(value: str) -> tuple[float, ...] | tuple[int, ...]:
    """``"0.7,0.15,0.15"`` (fractions) or ``"1400,300,300"`` (counts) for train, val, test."""
    parts = value.replace(" ", "").split(",")
    if all(part.isdigit() for part in parts):
        counts: tuple[int, ...] = parse_numbers(value, "--splits", count=(3,), kind=int)
        return counts
    fractions: tuple[float, ...] = parse_numbers(value, "--splits", count=(3,))
    return fractions


@app.command("dataset", cls=DiffrisCommand)
@user_errors
def dataset(
    output: Annotated[Path, typer.Argument(help="Dataset root folder to create.")],
    layout: Annotated[
        str,
        typer.Option("--format", "-f", help="Layout to write: risbench, refsegrs or rrsisd."),
    ] = "risbench",
    samples: Annotated[
        int, typer.Option("--samples", "-n", min=1, help="Sentence-mask samples in all.")
    ] = 2000,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = 512,
    seed: SeedOption = 0,
    splits: Annotated[
        str,
        typer.Option(
            "--splits", help="train,val,test as fractions (0.7,0.15,0.15) or sample counts."
        ),
    ] = "0.7,0.15,0.15",
    max_referrals: Annotated[
        int,
        typer.Option("--max-referrals", min=1, help="Samples (sentences) per generated image."),
    ] = 4,
    easy_fraction: Annotated[
        float,
        typer.Option(
            "--easy-fraction",
            min=0.0,
            max=1.0,
            help="Share of sentences naming a category or colour; the rest refer by size, "
            "position or relation.",
        ),
    ] = 0.5,
    object_scale: Annotated[
        float | None,
        typer.Option(
            "--object-scale",
            min=0.05,
            max=4.0,
            help="Object size relative to a 512 px image; default size/512 (objects shrink "
            "with the image); 1.0 draws them at native size, as in tiles of a large scene.",
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Write a synthetic dataset in a benchmark's own layout (its loader reads it unchanged).

    Example: diffris synth dataset out/ --format risbench --samples 2000
    """
    from rich.table import Table

    from diffris.data.synthetic import Layout, write_dataset

    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise OutputExistsError(
            f"{output} exists and is not empty; pass --overwrite to write into it"
        )
    summary = write_dataset(
        output,
        layout=parse_enum(Layout, layout, "--format"),
        samples=samples,
        splits=parse_splits(splits),
        size=size,
        seed=seed,
        max_referrals=max_referrals,
        easy_fraction=easy_fraction,
        object_scale=object_scale,
        overwrite=overwrite,
    )
    facts = {
        "root": str(summary.root),
        "format": summary.layout.value,
        "samples": summary.samples,
        "images": summary.images,
        "kinds": summary.kinds,
        "categories": list(summary.categories),
        "seconds": round(summary.seconds, 3),
    }
    if as_json:
        out_console.print_json(json.dumps(facts))
        return
    if quiet:
        return
    table = Table(title=f"synthetic {summary.layout.value} dataset in {summary.root}")
    for column in ("split", "samples", "images"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, count in summary.samples.items():
        table.add_row(split, str(count), str(summary.images[split]))
    out_console.print(table)
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary.kinds.items())
    out_console.print(
        f"{sum(summary.samples.values())} samples in {summary.seconds:.1f} s; expressions: {kinds}",
        highlight=False,
    )


@app.command("scene", cls=DiffrisCommand)
@user_errors
def scene(
    output: Annotated[Path, typer.Argument(help="The GeoTIFF to write.")],
    size: Annotated[str, typer.Option("--size", help="Side in pixels, or HEIGHT,WIDTH.")] = "4096",
    seed: SeedOption = 0,
    prompts: Annotated[
        list[str] | None,
        typer.Option(
            "--prompt",
            "-t",
            help="A scene prompt (category and colour, e.g. 'the red roofs'); repeatable. "
            "Default: the first --max-prompts of a built-in list that the scene contains.",
        ),
    ] = None,
    max_prompts: Annotated[
        int, typer.Option("--max-prompts", min=1, help="Default prompts to pick, at most.")
    ] = 6,
    prompts_out: Annotated[
        Path | None,
        typer.Option("--prompts-out", help="Write the description file (YAML) here."),
    ] = None,
    masks_out: Annotated[
        Path | None,
        typer.Option("--masks-out", help="Folder for one ground-truth <id>.tif per prompt."),
    ] = None,
    crs: Annotated[str, typer.Option("--crs", help="A projected CRS.")] = "EPSG:32633",
    pixel_size: Annotated[
        float, typer.Option("--pixel-size", help="Ground sampling distance, CRS units per px.")
    ] = 0.5,
    origin: Annotated[
        str, typer.Option("--origin", help="X,Y of the top-left corner in CRS units.")
    ] = "500000,5000000",
    nodata_border: Annotated[
        int, typer.Option("--nodata-border", min=0, help="Width of a nodata collar in px.")
    ] = 64,
    dtype: Annotated[
        str, typer.Option("--dtype", help="uint8, or uint16 (values that need a stretch).")
    ] = "uint8",
    overviews: Annotated[
        bool, typer.Option("--overviews/--no-overviews", help="Build internal overviews.")
    ] = True,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Write a large synthetic georeferenced scene, its prompts and ground-truth masks.

    Example: diffris synth scene scene.tif --size 4096 --prompts-out prompts.yaml --masks-out masks/
    """
    from rich.table import Table

    from diffris.data.synthetic import SceneDtype, write_scene

    sides = parse_numbers(size, "--size", count=(1, 2), kind=int)
    x, y = parse_numbers(origin, "--origin", count=(2,))
    if output.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"{output} is not a .tif path; the scene is written as a GeoTIFF")
    for path in (output, prompts_out):
        if path is not None and path.exists() and not overwrite:
            raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    summary = write_scene(
        output,
        size=sides[0] if len(sides) == 1 else (sides[0], sides[1]),
        seed=seed,
        crs=crs,
        pixel_size=pixel_size,
        origin=(x, y),
        nodata_border=nodata_border,
        dtype=parse_enum(SceneDtype, dtype, "--dtype"),
        prompts=list(prompts) if prompts else None,
        max_prompts=max_prompts,
        prompts_out=prompts_out,
        masks_out=masks_out,
        overviews=overviews,
        overwrite=overwrite,
    )
    facts = {
        "path": str(summary.path),
        "height": summary.height,
        "width": summary.width,
        "crs": summary.crs,
        "transform": list(summary.transform),
        "dtype": summary.dtype.value,
        "prompts": [
            {
                "id": p.id,
                "text": p.text,
                "mask": str(p.mask) if p.mask else None,
                "pixels": p.pixels,
            }
            for p in summary.prompts
        ],
        "prompts_file": str(summary.prompts_path) if summary.prompts_path else None,
        "objects": summary.objects,
        "seconds": round(summary.seconds, 3),
    }
    if as_json:
        out_console.print_json(json.dumps(facts))
        return
    if quiet:
        return
    table = Table(title=f"{summary.path}: {summary.width} x {summary.height} px, {summary.crs}")
    for column in ("prompt id", "text", "mask pixels", "mask file"):
        table.add_column(column)
    for p in summary.prompts:
        table.add_row(p.id, p.text, str(p.pixels), str(p.mask) if p.mask else "-")
    out_console.print(table)
    if summary.prompts_path:
        out_console.print(f"prompts: {summary.prompts_path}", highlight=False)
    out_console.print(f"written in {summary.seconds:.1f} s", highlight=False)
