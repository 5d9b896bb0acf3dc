"""``diffris evaluate``: score a model or a folder of predicted masks on a benchmark split."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from diffris_cli.console import out_console
from diffris_cli.errors import EXIT_USAGE, fail, user_errors
from diffris_cli.options import (
    DeviceOption,
    JsonOption,
    ModelOption,
    OverwriteOption,
    PrecisionOption,
    PretrainedOption,
    QuietOption,
    ThreadsOption,
)
from diffris_cli.parsing import parse_enum

if TYPE_CHECKING:  # the library is imported inside the command: --help answers at once
    from diffris.eval.evaluate import EvaluationResult

log = logging.getLogger("diffris.cli")


@user_errors
def evaluate_command(
    ctx: typer.Context,
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            "-d",
            help="rrsisd, refsegrs, risbench, or synthetic (a folder from 'diffris synth "
            "dataset', any layout).",
        ),
    ],
    data_root: Annotated[
        Path, typer.Option("--data-root", help="The dataset folder (layout in the README).")
    ],
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "test",
    model: ModelOption = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            help="Folder of predicted masks, one PNG/TIFF per sample id (instead of --model).",
        ),
    ] = None,
    pretrained: PretrainedOption = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            help="Network input size S in pixels (S x S). Default: the size the model was "
            "trained at (its metadata), else its architecture's recipe (DiffRIS 512, RSRefSeg "
            "1024); 512 with --predictions.",
            show_default=False,
        ),
    ] = None,
    resolution: Annotated[
        str,
        typer.Option(
            "--resolution",
            help="input: compare at S x S with the nearest-resized ground truth (the standard "
            "protocol); original: at the image's own size.",
        ),
    ] = "input",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Samples per model batch.")
    ] = 8,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="Processes reading samples (0: none).")
    ] = 0,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    threads: ThreadsOption = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Score only the first N samples of the split."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the scores as JSON to this file."),
    ] = None,
    as_json: JsonOption = False,
    per_sample: Annotated[
        bool, typer.Option("--per-sample", help="Add each sample's I, U and IoU to the JSON.")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write a self-contained HTML report with a gallery."),
    ] = None,
    gallery: Annotated[
        int, typer.Option("--gallery", min=0, help="Best and worst samples in the report.")
    ] = 8,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Score a model, or another method's predicted masks, on a benchmark split.

    Per sentence, IoU = 0 for an empty union; Pr@0.5-0.9 (IoU >= X), oIoU, mIoU, x100.

    Examples:

      diffris evaluate --dataset rrsisd --data-root /data/RRSIS-D --split test --model runs/best

      diffris evaluate -d refsegrs --data-root /data/RefSegRS --predictions preds/ -o scores.json

      diffris evaluate -d risbench --data-root /data/RISBench --model runs/best --report report.html

      diffris evaluate -d synthetic --data-root synth/ --model runs/demo/best --limit 200
    """
    _refuse_stray_arguments(ctx.args, as_json=as_json)
    from diffris.devices import Precision
    from diffris.eval.evaluate import EvaluateOptions, check_outputs, evaluate
    from diffris.eval.metrics import Resolution
    from diffris.models.names import (
        DEFAULT_INPUT_SIZE,
        check_pretrained_form,
        input_size,
        parse_pretrained,
    )
    from diffris_cli.progress import progress_bars

    folders = parse_pretrained(pretrained)
    if predictions is not None and model is not None and model == os.environ.get("DIFFRIS_MODEL"):
        log.debug("--predictions given: ignoring DIFFRIS_MODEL=%s", model)
        model = None
    check_outputs([output, report], overwrite=overwrite)
    if model is not None:
        check_pretrained_form(model, folders)
    if image_size is None:
        image_size = DEFAULT_INPUT_SIZE if model is None else input_size(model)
    options = EvaluateOptions(
        image_size=image_size,
        resolution=parse_enum(Resolution, resolution, "--resolution"),
        batch_size=batch_size,
        workers=workers,
        device=device,
        precision=parse_enum(Precision, precision, "--precision"),
        limit=limit,
        gallery=gallery if report is not None else 0,
    )
    from diffris.cpu_threads import limit_threads, resolve_threads

    limit_threads(resolve_threads(threads))
    with progress_bars("samples", quiet=quiet or as_json) as progress_for:
        result = evaluate(
            dataset,
            data_root,
            split,
            model=model,
            predictions=predictions,
            pretrained=folders,
            options=options,
            progress=progress_for(f"{dataset} {split}", 0),
        )
    if output is not None:
        result.write_json(output, samples=per_sample)
    if report is not None:
        result.write_report(report)
    if as_json:
        out_console.print_json(json.dumps(result.to_dict(samples=per_sample)))
        return
    _print_result(result)  # the scores are the answer: printed under -q too
    for written in (output, report):
        if written is not None and not quiet:
            out_console.print(f"wrote {written}", highlight=False)


def _refuse_stray_arguments(extra: list[str], *, as_json: bool) -> None:
    """One clear usage line for a leftover argument, naming the new flag for the old
    ``--json PATH`` (``--json`` is a flag now, as in every other command)."""
    if not extra:
        return
    if as_json and extra[0] == "-":
        message = "--json takes no value any more: it prints the scores on stdout; drop the '-'"
    elif as_json:
        message = (
            f"--json takes no value any more (it prints the scores on stdout); "
            f"write them to a file with -o {extra[0]}"
        )
    else:
        message = f"unexpected argument {extra[0]!r}; see diffris evaluate --help"
    raise fail(message, EXIT_USAGE)


def _print_result(result: EvaluationResult) -> None:
    from rich.table import Table

    from diffris.eval.metrics import Resolution

    scores, settings = result.scores, result.settings
    source = settings.get("model") or f"predictions {settings.get('predictions')}"
    table = Table(title=result.title)
    figures = scores.figures()
    for column in ("samples", *figures):
        table.add_column(column, justify="right")
    table.add_row(str(scores.n), *(f"{value:.2f}" for value in figures.values()))
    out_console.print(table)
    if scores.per_category:
        categories = Table(title="Per category")
        categories.add_column("category")
        for column in ("n", "mIoU", "oIoU", "Pr@0.5"):
            categories.add_column(column, justify="right")
        for name, part in scores.per_category.items():
            categories.add_row(
                name, str(part.n), f"{part.miou:.2f}", f"{part.oiou:.2f}", f"{part.pr_at[0.5]:.2f}"
            )
        out_console.print(categories)
    resolution = settings["resolution"]
    size = settings["image_size"]
    where = (
        f"the {size}x{size} input size"
        if resolution == Resolution.INPUT.value
        else "the original image size"
    )
    out_console.print(
        f"Scored {scores.n} of {settings['split_samples']} samples of {settings['dataset']} "
        f"{settings['split']} ({source}; {resolution} resolution: compared at {where}; x100).",
        highlight=False,
    )
