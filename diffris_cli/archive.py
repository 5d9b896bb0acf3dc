"""``diffris archive``: segment every scene of a folder, glob or list; resumable, for cron."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from diffris.errors import InputError
from diffris_cli.console import out_console
from diffris_cli.errors import sigterm_stops, user_errors
from diffris_cli.helptext import DiffrisCommand
from diffris_cli.logs import add_log_file
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
    PrecisionOption,
    PretrainedOption,
    QuietOption,
    SimplifyOption,
    StacOption,
    StretchOption,
    ThresholdOption,
    TileOption,
)
from diffris_cli.parsing import (
    feature_cache_options,
    parse_enum,
    segment_options,
    vector_format,
    vector_options,
)

if TYPE_CHECKING:  # the library is imported inside the command: --help answers at once
    from diffris.archive.runner import ArchiveReport

log = logging.getLogger("diffris.cli")


def _backend(workers: int, gpus: int, scheduler: str | None, threads: int | None, device: str):
    from diffris.archive.backends import InlineBackend
    from diffris.archive.dask_backend import DaskBackend
    from diffris.archive.pool import ProcessPoolBackend
    from diffris.cpu_threads import default_threads, resolve_threads

    if scheduler:
        return DaskBackend(
            scheduler,
            n_workers=max(workers, gpus, 1),
            gpu=gpus > 0,
            threads=None if gpus else threads or 1,
        )
    # as segment's --threads: never more than the CPUs this process may use and finds idle,
    # shared among the local workers (a remote dask cluster's CPUs are not ours to count)
    if gpus > 0:
        per_gpu = threads or default_threads(processes=gpus)
        return ProcessPoolBackend(gpus, devices=[f"cuda:{i}" for i in range(gpus)], threads=per_gpu)
    if workers > 1:
        return ProcessPoolBackend(workers, threads=threads or default_threads(processes=workers))
    return InlineBackend(device, threads=resolve_threads(threads))


@user_errors
# cron and systemd stop jobs with SIGTERM: like Ctrl-C, the runner returns running scenes to
# pending and stops its workers (one line, exit 143)
@sigterm_stops()
def archive(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="A folder (recursive), a glob such as 'data/**/*.tif', a text file listing "
            "scenes, or a STAC Item, ItemCollection or Catalog (.json).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Output folder; holds the ledger (diffris-ledger.sqlite) and the lock.",
        ),
    ],
    prompts_file: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="Description file (YAML/JSON list of {id, text, threshold?}, or one prompt per line).",
        ),
    ] = None,
    model: ModelOption = None,
    pretrained: PretrainedOption = None,
    max_memory: MaxMemoryOption = None,
    gdal_cache: GdalCacheOption = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes on this machine (CPU), each taking whole scenes.",
        ),
    ] = 1,
    gpus: Annotated[
        int, typer.Option("--gpus", min=0, help="One worker process per GPU (cuda:0..N-1).")
    ] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="'local' for a dask LocalCluster, or an existing scheduler address (tcp://head:8786).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="torch threads per worker. Default: the CPUs this process may use (affinity, "
            "cgroup quota) that the load average leaves idle, shared among the workers, at least "
            "1. Fix it for bit-identical outputs across worker counts and machines.",
            show_default=False,
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            min=0,
            help="Later runs retry a failed scene while it failed at most this many times.",
        ),
    ] = 2,
    hash_content: Annotated[
        bool,
        typer.Option(
            "--hash-content",
            help="Identify inputs by a SHA-256 of their content, not size and mtime.",
        ),
    ] = False,
    split_rows: Annotated[
        int | None,
        typer.Option(
            "--split-rows",
            min=1,
            help="Split GeoTIFF scenes taller than this many rows across workers.",
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Checksum every done output before skipping it, even one whose size and mtime "
            "are unchanged (reads every output).",
        ),
    ] = False,
    output_format: FormatOption = None,
    output_type: OutputTypeOption = "mask",
    dtype: DtypeOption = None,
    threshold: ThresholdOption = 0.5,
    tile: TileOption = 512,
    overlap: OverlapOption = 64,
    batch_size: BatchSizeOption = 4,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    bands: BandsOption = None,
    nodata: NodataOption = None,
    stretch: StretchOption = None,
    creation_options: CreationOption = None,
    asset: AssetOption = None,
    stac: StacOption = False,
    vector_format_name: Annotated[
        str | None,
        typer.Option(
            "--vector-format",
            help="Also write each scene's polygons beside its raster: gpkg (a layer per prompt) "
            "or parquet (GeoParquet, a 'prompt' column); recorded in the ledger with the raster.",
            show_default=False,
        ),
    ] = None,
    min_area: MinAreaOption = None,
    simplify: SimplifyOption = 0.0,
    holes: HolesOption = False,
    no_holes: NoHolesOption = False,
    feature_cache: FeatureCacheOption = None,
    feature_cache_size: FeatureCacheSizeOption = None,
    feature_cache_dtype: FeatureCacheDtypeOption = None,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", help="Also append log lines to this file.")
    ] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Segment every scene of an archive; rerun it (e.g. nightly from cron) to do only what changed.

    A scene is skipped when its ledger row is done and its output is still the one published
    (same size and mtime, else the same checksum); a changed input, model, prompt file or
    option, or a truncated or changed output, reprocesses it. A damaged ledger is moved aside
    and rebuilt from the outputs' tags. Exit codes: 0 every scene
    done, 1 some scene failed, 75 another run holds the folder.

    Examples:

      diffris archive /data/incoming --prompts prompts.yaml -o /data/masks --model runs/best

      diffris archive "/data/**/*.tif" --prompts p.yaml -o out/ --gpus 4

      diffris archive stac/catalog.json --prompts p.yaml -o out/ --stac   (out/catalog.json)

      diffris archive /data/2025 --prompts new.yaml -o out/ --feature-cache feats/

      diffris archive status -o /data/masks     (see diffris archive status --help)
    """
    from diffris.data.prompts import load_prompts
    from diffris.geo.gdal_cache import bounded_gdal_cache, resolve_gdal_cache
    from diffris.inference.memory import parse_size
    from diffris.models.names import check_pretrained_form, parse_pretrained

    folders = parse_pretrained(pretrained)
    # The driver's reads (inputs, ledger checks) hold to it here; each worker applies the
    # processor's bound to its scenes (a dask worker may be on another machine).
    gdal = resolve_gdal_cache(gdal_cache)
    ctx.with_resource(bounded_gdal_cache(gdal.size))
    if log_file is not None:
        add_log_file(log_file)
    if prompts_file is None:
        raise InputError("no prompts given; pass --prompts prompts.yaml")
    if model is None:
        raise InputError(
            "no model given; pass --model with a trained-model folder, or set DIFFRIS_MODEL"
        )
    check_pretrained_form(model, folders)
    prompts = load_prompts(prompts_file)
    options = segment_options(
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        threshold=threshold,
        output_type=output_type,
        dtype=dtype,
        output_format=output_format,
        bands=bands,
        nodata=nodata,
        stretch=stretch,
        creation_options=creation_options,
    )
    polygon_format = vector_format(vector_format_name, "--vector-format")
    if holes and no_holes:
        raise InputError("--holes and --no-holes contradict each other; give one of them")
    polygon_options = vector_options(min_area=min_area, simplify=simplify, holes=not no_holes)
    if polygon_format is None and (min_area is not None or simplify or no_holes):
        raise InputError(
            "--min-area, --simplify and --no-holes apply to polygons; add --vector-format gpkg"
        )
    if polygon_format is not None and split_rows is not None:
        raise InputError(
            "--vector-format and --split-rows do not go together: polygons are joined across "
            "a whole scene; drop --split-rows"
        )
    budget = parse_size(max_memory) if max_memory is not None else None
    cache = feature_cache_options(feature_cache, feature_cache_size, feature_cache_dtype)
    # the heavy part (torch, dask) only once the flags are known to be good
    from diffris.archive.processor import SegmentProcessor
    from diffris.archive.runner import ArchiveProgress
    from diffris.archive.runner import archive as run_archive
    from diffris.devices import Precision
    from diffris.inference.feature_cache import prepare_cache_folder
    from diffris.models.names import model_identity
    from diffris_cli.progress import progress_bars

    if cache is not None:
        prepare_cache_folder(cache.folder)  # before any worker starts: a bad folder fails at once
    processor = SegmentProcessor(
        model=model,
        prompts=tuple(prompts),
        precision=parse_enum(Precision, precision, "--precision"),
        pretrained=folders,
        max_memory=budget,
        feature_cache=cache,
        gdal_cache=gdal.size,
    )
    suffix = ".zarr" if options.format is not None and options.format.value == "zarr" else ".tif"
    with progress_bars("scenes", quiet=quiet or as_json) as progress_for:
        update = progress_for("archive", 0)

        def progress(state: ArchiveProgress) -> None:
            update(state.done + state.failed, state.to_run)

        report = run_archive(
            source,
            out_dir=output,
            processor=processor,
            model=processor.model,
            model_id=model_identity(processor.model),
            prompts=prompts,
            options=processor.job_options(
                options, vector_format=polygon_format, vector_options=polygon_options
            ),
            suffix=suffix,
            backend=_backend(workers, gpus, scheduler, threads, device),
            retries=retries,
            hash_content=hash_content,
            split_rows=split_rows,
            split_align=options.tile,
            progress=progress,
            verify=verify,
            stac=stac,
            asset=asset,
        )
    _print_report(report, as_json=as_json, quiet=quiet)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _print_report(report: ArchiveReport, *, as_json: bool, quiet: bool) -> None:
    if as_json:
        out_console.print_json(json.dumps(report.to_dict()))
        return
    if not quiet:
        counts = ", ".join(f"{count} {name}" for name, count in report.counts.items() if count)
        out_console.print(
            f"{report.out_dir}: {counts or 'nothing to do'} in {report.seconds:.1f} s"
        )
    for result in report.results:
        if result.status in ("failed", "given-up"):
            out_console.print(f"[red]{result.status}[/] {result.input}: {result.error}")


@user_errors
def status(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The archive's output folder (its ledger).")
    ],
    show_all: Annotated[
        bool, typer.Option("--all", help="Every ledger row, not only the latest per output.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show what an archive's ledger holds: counts per status, then a row per output.

    Example: diffris archive status -o /data/masks --json
    """
    from rich.table import Table

    from diffris.archive.ledger import Ledger

    if not (output / "diffris-ledger.sqlite").is_file():
        raise InputError(
            f"{output} has no archive ledger (diffris-ledger.sqlite); run diffris archive -o {output} first"
        )
    summary = Ledger.for_output(output, readonly=True).summary(all_rows=show_all)
    if as_json:
        out_console.print_json(json.dumps(summary.to_dict()))
        return
    counts = Table(title=f"{summary.ledger}")
    for name in summary.counts:
        counts.add_column(name)
    counts.add_row(*(str(value) for value in summary.counts.values()))
    rows = Table()
    for column in ("status", "input", "output", "attempts", "seconds", "error"):
        rows.add_column(column)
    for row in summary.rows:
        seconds = f"{row.seconds:.1f}" if row.seconds is not None else ""
        rows.add_row(row.status, row.input, row.output, str(row.attempts), seconds, row.error or "")
    out_console.print(counts, rows)


class ArchiveCommand(DiffrisCommand):
    """``diffris archive SOURCE``, and ``diffris archive status`` as a command of its own
    (its own flags and ``--help``): a source named ``status`` is handed to :func:`status`."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args[:1] == ["status"]:
            command = _status_command()
            # a sibling of this command's context, so its usage reads "diffris archive status"
            name = f"{ctx.info_name} status"
            with command.make_context(name, args[1:], parent=ctx.parent) as status_ctx:
                command.invoke(status_ctx)
            ctx.exit(0)
        return super().parse_args(ctx, args)


def _status_command() -> Any:
    status_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    status_app.command(
        cls=DiffrisCommand, context_settings={"help_option_names": ["-h", "--help"]}
    )(status)
    return typer.main.get_command(status_app)
