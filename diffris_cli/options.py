"""Options shared by several commands, so that a flag means the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the result as one JSON object on stdout (no table, no progress)."
    ),
]

#: What ``-q`` does, before or after the command name alike.
QUIET_HELP = (
    "Only warnings, errors and the answer asked for (scores, a dry-run plan, --json): no progress, "
    "no info log lines, no run summary."
)


def _quiet(ctx: typer.Context, value: bool) -> bool:
    """``diffris -q CMD`` and ``diffris CMD -q`` mean the same: the command sees quiet either way,
    and the library's logging drops to warnings."""
    quiet = value or bool(ctx.find_root().params.get("quiet"))
    if quiet:
        from diffris_cli.logs import quiet_logging

        quiet_logging()
    return quiet


QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", callback=_quiet, help=QUIET_HELP, show_default=False)
]
#: What ``--pretrained`` says in every command's help.
PRETRAINED_HELP = (
    "Local folders of the frozen foundations (never downloaded). DiffRIS: one Stable Diffusion "
    "1.5 folder in the diffusers layout, --pretrained DIR (or sd15=DIR); default $DIFFRIS_SD15, "
    "then <diffris home>/stable-diffusion-v1-5. RSRefSeg: Hugging Face folders given by key, "
    "--pretrained siglip=DIR --pretrained sam=DIR (repeat the option); default $DIFFRIS_SIGLIP "
    "and $DIFFRIS_SAM, then the diffris home. 'diffris info' shows what is found."
)
PretrainedOption = Annotated[
    list[str] | None,
    typer.Option("--pretrained", help=PRETRAINED_HELP, show_default=False, metavar="[KEY=]DIR"),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="A trained-model folder of either architecture (its config.json names it), or a "
        "preset (untrained heads): DiffRIS tiny, sd15; RSRefSeg rsrefseg-tiny, rsrefseg-b, "
        "rsrefseg-l (tiny and rsrefseg-tiny are random demo backbones). Default: $DIFFRIS_MODEL.",
        envvar="DIFFRIS_MODEL",
        show_envvar=False,
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N, mps or auto.")]
PrecisionOption = Annotated[str, typer.Option("--precision", help="fp32, bf16 or fp16 (autocast).")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", min=1, help="Tiles per model batch.")]
TileOption = Annotated[
    int, typer.Option("--tile", help="Window size in pixels (a multiple of 64, at most 8192).")
]
OverlapOption = Annotated[
    int, typer.Option("--overlap", help="Pixels shared by neighbouring windows.")
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="gtiff, cog or zarr; for polygons gpkg, parquet, geojson or fgb (default: from "
        "the extension).",
    ),
]
OutputTypeOption = Annotated[
    str, typer.Option("--output-type", help="mask (uint8 0/1, nodata 255) or prob.")
]
DtypeOption = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="For --output-type prob: uint8 (0-254, nodata 255) or float32 (nodata NaN).",
    ),
]
ThresholdOption = Annotated[
    float,
    typer.Option("--threshold", help="Probability at or above which a pixel is in a mask."),
]
BandsOption = Annotated[
    str | None,
    typer.Option("--bands", help="1-based bands as R,G,B (e.g. 4,3,2) or one grey band."),
]
NodataOption = Annotated[float | None, typer.Option("--nodata", help="Extra input nodata value.")]
StretchOption = Annotated[
    str | None,
    typer.Option(
        "--stretch",
        help="Manual min,max of the 8-bit stretch (default: scene 2-98 % percentiles).",
    ),
]
CreationOption = Annotated[
    list[str] | None,
    typer.Option("--co", help="Format creation option KEY=VALUE; repeatable."),
]
PromptsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--prompts",
        help="Description file: YAML/JSON list of {id, text, threshold?}, or one prompt per line.",
    ),
]
MaxMemoryOption = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        metavar="SIZE",
        help="Memory a scene's run may use, e.g. 48G (also DIFFRIS_MAX_MEMORY); a run whose "
        "estimate exceeds it is refused before its work. Default: the memory available now.",
        show_default=False,
    ),
]
AssetOption = Annotated[
    str | None,
    typer.Option(
        "--asset",
        help="For STAC inputs: the asset to read from each item (default: 'visual', else the "
        "first image asset with red, green and blue bands).",
        show_default=False,
    ),
]
StacOption = Annotated[
    bool,
    typer.Option(
        "--stac",
        help="Write a STAC Item beside each output (<name>.stac.json: WGS84 footprint, proj, "
        "raster:bands, checksum, model).",
    ),
]
VectorFormatOption = Annotated[
    str | None,
    typer.Option(
        "--vector-format",
        help="Format of the polygons: gpkg (a layer per prompt), parquet (GeoParquet), geojson "
        "or fgb (a 'prompt' column). Default: from the extension, else gpkg.",
        show_default=False,
    ),
]
MinAreaOption = Annotated[
    str | None,
    typer.Option(
        "--min-area",
        help="Drop polygons smaller than this: pixels (50, 50px) or square metres (50m2, for a "
        "CRS in metres). Counts the mask pixels of the polygon, holes excluded.",
        show_default=False,
    ),
]
SimplifyOption = Annotated[
    float,
    typer.Option(
        "--simplify",
        help="Simplify the pixel outlines with this tolerance, in CRS units (topology "
        "preserved: every polygon stays valid). 0 keeps the exact pixel edges.",
    ),
]
# --holes/--no-holes as two flags, --holes hidden: a flag pair's second name gets a column of
# its own in every command's help table, which squeezed every help text to a third of the width.
HolesOption = Annotated[
    bool,
    typer.Option("--holes", hidden=True, help="Keep the polygons' holes (the default)."),
]
NoHolesOption = Annotated[
    bool,
    typer.Option(
        "--no-holes",
        help="Fill every hole of the polygons that holds no nodata (--holes, the default, keeps "
        "them).",
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="CPU compute threads (torch, OpenMP). Default: $OMP_NUM_THREADS, else one per physical core, "
        "at most the CPUs this process may use (affinity, cgroup quota) that the load average "
        "leaves idle, at least 1. Fix it for bit-identical outputs across machines and runs.",
        show_default=False,
    ),
]
FeatureCacheOption = Annotated[
    Path | None,
    typer.Option(
        "--feature-cache",
        metavar="DIR",
        help="Keep each tile's image features in this folder and reuse them in later runs on "
        "the same scenes, so that new prompts cost only the decoding. Default: none kept.",
        show_default=False,
    ),
]
FeatureCacheSizeOption = Annotated[
    str | None,
    typer.Option(
        "--feature-cache-size",
        metavar="SIZE",
        help="Most the feature cache keeps, e.g. 20G (the default); past it, the least "
        "recently used scenes are evicted.",
        show_default=False,
    ),
]
FeatureCacheDtypeOption = Annotated[
    str | None,
    typer.Option(
        "--feature-cache-dtype",
        metavar="DTYPE",
        help="float16 (the default: half the disk; probabilities within ~1e-2 of a run "
        "without the cache, a mask pixel in a million flips) or float32 (outputs "
        "bit-identical to a run without it).",
        show_default=False,
    ),
]
GdalCacheOption = Annotated[
    str | None,
    typer.Option(
        "--gdal-cache",
        metavar="SIZE",
        help="GDAL's block cache for the run's reads and writes, e.g. 64M, 1G or 5% (of the "
        "RAM, GDAL's own default). Default: $DIFFRIS_GDAL_CACHE, else a GDAL_CACHEMAX set in "
        "the environment, else 32M (memory then follows the scene's width, not its area).",
        show_default=False,
    ),
]
