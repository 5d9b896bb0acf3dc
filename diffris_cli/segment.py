"""``diffris segment``: scenes and descriptions in, georeferenced masks out."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from diffris.errors import InputError
from diffris_cli.console import out_console
from diffris_cli.errors import sigterm_stops, user_errors
from diffris_cli.options import (
    AssetOption,
    BandsOption,
    BatchSizeOption,
    CreationOption,
    DeviceOption,
    DtypeOption,
    FeatureCacheDtypeOption,
    FeatureCacheOption,
    FeatureCacheSizeOption,
    FormatOption,
    GdalCacheOption,
    HolesOption,
    JsonOption,
    MaxMemoryOption,
    MinAreaOption,
    ModelOption,
    NodataOption,
    NoHolesOption,
    OutputTypeOption,
    OverlapOption,
    OverwriteOption,
    PrecisionOption,
    PretrainedOption,
    PromptsFileOption,
    QuietOption,
    SimplifyOption,
    StacOption,
    StretchOption,
    ThreadsOption,
    ThresholdOption,
    TileOption,
    VectorFormatOption,
)
from diffris_cli.parsing import (
    feature_cache_options,
    parse_enum,
    segment_options,
    vector_format,
    vector_options,
)

if TYPE_CHECKING:  # the library is imported inside the command: --help answers at once
    from diffris.data.prompts import Prompt
    from diffris.geo.gdal_cache import GdalCache
    from diffris.inference.run import RunPlan, RunSummary
    from diffris.inference.segment import SegmentOptions, VectorTarget

log = logging.getLogger("diffris.cli")


def gather_prompts(texts: list[str] | None, prompt_file: Path | None) -> list[Prompt]:
    """Prompts from ``--prompts`` then ``--text`` flags; at least one is required."""
    from diffris.data.prompts import load_prompts, prompts_from_texts

    prompts = load_prompts(prompt_file) if prompt_file else []
    if texts:
        taken = {p.id for p in prompts}
        extra = [p for p in prompts_from_texts(list(texts))]
        for prompt in extra:
            if prompt.id in taken:
                raise InputError(f"--text id {prompt.id!r} clashes with an id in {prompt_file}")
        prompts += extra
    if not prompts:
        raise InputError('no prompt given; pass --text "the river" or --prompts prompts.yaml')
    return prompts


@user_errors
@sigterm_stops()  # a clean stop: the output in progress removed, one line, exit 143
def segment(
    ctx: typer.Context,
    scenes: Annotated[
        list[str],
        typer.Argument(
            help="Rasters: any name GDAL opens (a path, /vsicurl/https://..., s3://..., "
            "GTIFF_DIR:2:a.tif), or STAC JSON files (an Item, ItemCollection or Catalog).",
            show_default=False,
        ),
    ],
    output: Annotated[  # a str: a Path would drop the trailing "/" that says "a folder"
        str,
        typer.Option(
            "--output",
            "-o",
            help="Output file, or a folder for several scenes: a raster (.tif, .cog.tif, "
            ".zarr) or polygons (.gpkg, .parquet, .geojson, .fgb).",
        ),
    ],
    text: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="A description; repeat for several.")
    ] = None,
    prompts_file: PromptsFileOption = None,
    model: ModelOption = None,
    pretrained: PretrainedOption = None,
    output_format: FormatOption = None,
    output_type: OutputTypeOption = "mask",
    dtype: DtypeOption = None,
    threshold: ThresholdOption = 0.5,
    tile: TileOption = 512,
    overlap: OverlapOption = 64,
    batch_size: BatchSizeOption = 4,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    threads: ThreadsOption = None,
    bands: BandsOption = None,
    nodata: NodataOption = None,
    stretch: StretchOption = None,
    creation_options: CreationOption = None,
    asset: AssetOption = None,
    stac: StacOption = False,
    overwrite: OverwriteOption = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check all the run checks, then print grid sizes, tiles and a memory estimate; "
            "load no model, write nothing.",
        ),
    ] = False,
    preview: Annotated[
        Path | None,
        typer.Option(
            "--preview", help="Write a PNG quick-look with the masks overlaid (one scene)."
        ),
    ] = None,
    max_memory: MaxMemoryOption = None,
    gdal_cache: GdalCacheOption = None,
    vector: Annotated[
        str | None,
        typer.Option(
            "--vector",
            help="Also write the masks' polygons here (.gpkg, .parquet, .geojson, .fgb; a "
            "folder for several scenes), from the same probabilities as the raster.",
            show_default=False,
        ),
    ] = None,
    vector_format_name: VectorFormatOption = None,
    min_area: MinAreaOption = None,
    simplify: SimplifyOption = 0.0,
    holes: HolesOption = False,
    no_holes: NoHolesOption = False,
    feature_cache: FeatureCacheOption = None,
    feature_cache_size: FeatureCacheSizeOption = None,
    feature_cache_dtype: FeatureCacheDtypeOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Segment scenes from natural-language descriptions into georeferenced masks or polygons.

    Examples:

      diffris segment scene.tif --text "buildings near the highway" -o buildings.tif --model runs/best

      diffris segment scene.tif --prompts prompts.yaml -o buildings.gpkg --min-area 20 --model runs/best

      diffris segment scene.tif --prompts prompts.yaml -o masks.tif --vector buildings.gpkg

      diffris segment a.tif b.tif --prompts prompts.yaml -o masks/ --format cog

      diffris segment catalog.json --prompts prompts.yaml -o masks/ --stac

      diffris segment scene.tif --prompts new.yaml -o new.tif --feature-cache features/
    """
    from diffris.geo.gdal_cache import bounded_gdal_cache, resolve_gdal_cache
    from diffris.geo.vector.options import is_vector_output
    from diffris.inference.memory import parse_size
    from diffris.inference.run import plan_run, preflight
    from diffris.models.names import check_pretrained_form, parse_pretrained
    from diffris.stac.scenes import resolve_scenes

    folders = parse_pretrained(pretrained)
    budget = parse_size(max_memory) if max_memory is not None else None
    # Every read and write from here on, the dry run's estimate included, holds to the bound.
    gdal = resolve_gdal_cache(gdal_cache)
    ctx.with_resource(bounded_gdal_cache(gdal.size))
    prompts = gather_prompts(text, prompts_file)
    if holes and no_holes:
        raise InputError("--holes and --no-holes contradict each other; give one of them")
    polygon_options = vector_options(min_area=min_area, simplify=simplify, holes=not no_holes)
    cache = feature_cache_options(feature_cache, feature_cache_size, feature_cache_dtype)
    polygons_only = is_vector_output(output, output_format)
    if output_format and not polygons_only:
        from diffris.geo.sinks.spec import OutputFormat
        from diffris.geo.vector.options import VectorFormat

        known = [f.value for f in OutputFormat] + [f.value for f in VectorFormat]
        if output_format.lower() not in known:
            raise InputError(f"--format {output_format!r} is not one of: {', '.join(known)}")
    options = segment_options(
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        threshold=threshold,
        output_type=output_type,
        dtype=dtype,
        output_format=None if polygons_only else output_format,
        bands=bands,
        nodata=nodata,
        stretch=stretch,
        creation_options=creation_options,
    )
    resolved = resolve_scenes(scenes, asset=asset)
    scenes = resolved.sources
    per_scene = resolved.options(options)
    outputs, vectors = _targets(
        scenes,
        output,
        options,
        names=resolved.names,
        polygons_only=polygons_only,
        vector=vector,
        vector_format_name=output_format if polygons_only else vector_format_name,
        polygon_options=polygon_options,
        asked={"--min-area": min_area, "--simplify": simplify or None, "--no-holes": no_holes},
    )
    if stac:
        from diffris.stac.items import check_stac_outputs

        if polygons_only:
            raise InputError(
                "--stac describes raster outputs; add one (-o masks.tif --vector polygons.gpkg)"
            )
        check_stac_outputs(
            outputs, zarr=options.format is not None and options.format.value == "zarr"
        )
    if preview and len(scenes) > 1:
        raise InputError("--preview works with one scene; run scenes separately for previews")
    if preview and polygons_only:
        raise InputError("--preview draws the raster masks; add a raster output (-o masks.tif)")
    # The dry run and the run share this preflight: a dry run passes only what the run accepts.
    failures = preflight(
        scenes,
        outputs,
        per_scene,
        prompts=prompts,
        overwrite=overwrite,
        preview=preview,
        max_memory=budget,
        vectors=vectors,
    )
    if len(failures) == len(scenes):
        for failure in failures:
            log.error("%s: %s", failure.scene, failure.error)
        raise InputError(f"none of the {len(scenes)} scenes can run; see the errors above")
    if model is None:
        raise InputError(
            "no model given; pass --model with a trained-model folder (or set DIFFRIS_MODEL), "
            "or --model tiny (DiffRIS) or rsrefseg-tiny (RSRefSeg) for an untrained smoke test"
        )
    check_pretrained_form(model, folders)
    if dry_run:
        shown = [o or v.path for o, v in zip(outputs, vectors, strict=True) if o or v]
        plan = plan_run(scenes, shown, prompts, per_scene, failures)
        _print_plan(plan, as_json=as_json, gdal=gdal)
        if plan.exit_code:
            raise typer.Exit(plan.exit_code)
        return
    from diffris.cpu_threads import limit_threads, resolve_threads
    from diffris.devices import Precision
    from diffris.geo.preview import write_preview
    from diffris.inference.feature_cache import prepare_cache_folder
    from diffris.inference.loading import load_predictor
    from diffris.inference.run import segment_scenes
    from diffris.inference.segment import open_scene
    from diffris_cli.progress import progress_bars

    compute_threads = resolve_threads(threads)
    limit_threads(compute_threads)  # before the model loads: no oversubscribed pool
    if cache is not None:
        prepare_cache_folder(cache.folder)  # before the model loads: a bad folder fails at once
    predictor, model_id = load_predictor(
        model,
        prompts,
        device=device,
        precision=parse_enum(Precision, precision, "--precision"),
        pretrained=folders,
        feature_cache=cache,
    )
    log.info("%d compute thread(s)%s", compute_threads, "" if threads else " (--threads N pins it)")
    with progress_bars("tiles", quiet=quiet or as_json) as progress_for:
        summary = segment_scenes(
            [str(s) for s in scenes],
            outputs,
            predictor,
            prompts,
            per_scene,
            model_id=model_id,
            overwrite=overwrite,
            progress_for=lambda scene, index: progress_for(Path(scene).name, 0),
            failures=failures,
            after_scene=resolved.item_writer(prompts, model_id) if stac else None,
            vectors=vectors,
        )
    if preview and summary.results and outputs[0] is not None:
        with open_scene(scenes[0], per_scene[0]) as opened:
            write_preview(
                opened, outputs[0], prompts, preview, threshold=threshold, overwrite=overwrite
            )
    if as_json:
        out_console.print_json(json.dumps(summary.to_dict()))
    elif not quiet:
        _print_summary(summary)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _targets(
    scenes: list[str],
    output: str,
    options: SegmentOptions,
    *,
    names: list[str] | None,
    polygons_only: bool,
    vector: str | None,
    vector_format_name: str | None,
    polygon_options: object,
    asked: dict[str, object],
) -> tuple[list[Path | None], list[VectorTarget | None]]:
    """Each scene's raster output (None: polygons only) and vector output (None: none)."""
    from diffris.inference.run import output_paths, vector_paths
    from diffris.inference.segment import VectorTarget

    if polygons_only and vector is not None:
        raise InputError(
            f"-o {output} already writes polygons; for a raster and polygons give "
            f"-o masks.tif --vector {vector}"
        )
    target = output if polygons_only else vector
    if target is None:
        for flag, value in asked.items():
            if value:
                raise InputError(
                    f"{flag} applies to polygons; add --vector buildings.gpkg or write "
                    "-o buildings.gpkg"
                )
        return list(output_paths(scenes, output, options.format, names)), [None] * len(scenes)
    fmt = vector_format(vector_format_name, "--format" if polygons_only else "--vector-format")
    vectors: list[VectorTarget | None] = [
        VectorTarget(path, polygon_options, fmt)  # type: ignore[arg-type]
        for path in vector_paths(scenes, target, fmt, names)
    ]
    if polygons_only:
        return [None] * len(scenes), vectors
    return list(output_paths(scenes, output, options.format, names)), vectors


def _print_plan(plan: RunPlan, *, as_json: bool, gdal: GdalCache) -> None:
    if as_json:
        out_console.print_json(json.dumps(plan.to_dict()))
        return
    from rich.table import Table

    table = Table(
        title="Dry run: nothing was written",
        caption=f"memory includes GDAL's block cache: {gdal.mib:g} MiB ({gdal.source})",
    )
    for column in ("scene", "size (px)", "grid", "tiles", "memory (MiB, excl. model)", "output"):
        table.add_column(column)
    for scene in plan.plans:
        table.add_row(
            Path(scene.scene).name,
            f"{scene.width} x {scene.height}",
            f"{scene.grid_rows} x {scene.grid_cols}",
            str(scene.tiles),
            f"{scene.estimated_memory_mib:.0f}",
            scene.output,
        )
    for failure in plan.failures:
        table.add_row(Path(failure.scene).name, f"[red]fails: {failure.error}[/]", "", "", "", "")
    out_console.print(table)


def _print_summary(summary: RunSummary) -> None:
    from rich.table import Table

    table = Table(title="diffris segment")
    for column in ("scene", "output", "tiles", "skipped", "seconds", "peak MiB"):
        table.add_column(column)
    for r in summary.results:
        written = r.output if r.vector in (None, r.output) else f"{r.output} + {r.vector}"
        if r.polygons is not None:
            written += f" ({r.polygons} polygons)"
        table.add_row(
            Path(r.scene).name,
            written,
            str(r.tiles),
            str(r.skipped_tiles),
            f"{r.seconds:.1f}",
            f"{r.peak_memory_mib:.0f}",
        )
    for failure in summary.failures:
        table.add_row(Path(failure.scene).name, f"[red]failed: {failure.error}[/]", "", "", "", "")
    out_console.print(table)
