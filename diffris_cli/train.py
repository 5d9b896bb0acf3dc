"""``diffris train``: train a model's heads on a benchmark or a synthetic dataset.

Every option defaults to None here: the defaults live in :class:`diffris.train.TrainConfig`
and the recipe of the preset's architecture (``diffris/models/<arch>/recipe.py``), and a
resumed run can tell a flag the user gave from one left alone.
Also runnable as ``python -m diffris_cli.train`` (e.g. under ``torchrun``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from diffris.errors import InputError, InputNotFoundError
from diffris.messages import clip
from diffris_cli.console import out_console
from diffris_cli.errors import user_errors
from diffris_cli.options import JsonOption, OverwriteOption, PretrainedOption, QuietOption
from diffris_cli.parsing import parse_enum

if TYPE_CHECKING:  # the library (torch) is imported inside the command: --help answers at once
    from diffris.train import LaunchOptions, TrainConfig

log = logging.getLogger("diffris.cli")

_RECIPE = "Recipe (defaults: the model's recipe, DiffRIS | RSRefSeg)"
_MODEL = "Model and ablations"
_RUN = "Processes and run folder"
#: Written out, not built from TRAIN_DATASETS, so --help need not import torch (a test keeps
#: the two in step).
DATASET_HELP = (
    "rrsisd, refsegrs, risbench, or synthetic (a folder written by diffris synth dataset)."
)


def _flag(help_text: str, panel: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel=panel, show_default=False)


def build_config(
    base: dict[str, Any], overrides: dict[str, Any], loss: str | None = None
) -> TrainConfig:
    """A :class:`TrainConfig` from a base dict (``--config``) and the flags given.

    ``loss`` (``--loss``) sets ``bce_weight``/``dice_weight`` from the preset's recipe over the
    base's; explicit ``--bce-weight``/``--dice-weight`` in ``overrides`` win over both.
    """
    from diffris.models.names import loss_weights
    from diffris.train import TrainConfig
    from diffris.train.config import DEFAULT_PRESET

    given = {key: value for key, value in overrides.items() if value is not None}
    values = {**base, **given}
    if loss is not None:
        preset = values.get("preset") or DEFAULT_PRESET
        weights = loss_weights(str(preset), loss)
        values.update({key: value for key, value in weights.items() if key not in given})
    return TrainConfig.from_dict(values)


def read_config_file(path: Path | None) -> dict[str, Any]:
    """A ``--config`` YAML file: a run's ``config.yaml`` or a plain mapping of TrainConfig keys."""
    import yaml

    from diffris import strict_yaml

    if path is None:
        return {}
    if not path.is_file():
        raise InputNotFoundError(f"--config {path} does not exist")
    try:
        document = strict_yaml.load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"--config {path} is not UTF-8 text; save it as UTF-8") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = clip(getattr(err, "problem", None) or str(err).splitlines()[0])
        raise InputError(f"--config {path}{line} is not valid YAML: {problem}") from err
    if isinstance(document, dict) and isinstance(document.get("config"), dict):
        document = document["config"]
    if not isinstance(document, dict):
        raise InputError(f"--config {path} must hold a mapping of training options")
    return document


@user_errors
def train(
    dataset: Annotated[str | None, _flag(DATASET_HELP, _RECIPE, "--dataset")] = None,
    data_root: Annotated[Path | None, _flag("The dataset folder.", _RECIPE, "--data-root")] = None,
    output: Annotated[
        Path | None, _flag("The run folder to create.", _RUN, "--output", "-o")
    ] = None,
    resume: Annotated[
        Path | None,
        _flag(
            "Continue the run saved in this folder exactly where it stopped (from step 0 if it "
            "saved no state yet), with the launch options it was started with.",
            _RUN,
            "--resume",
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    config_file: Annotated[
        Path | None,
        _flag(
            "YAML of training options (e.g. a run's config.yaml); flags override it.",
            _RECIPE,
            "--config",
        ),
    ] = None,
    preset: Annotated[
        str | None,
        _flag(
            "Model preset: sd15 (default), tiny (DiffRIS); rsrefseg-b, rsrefseg-l, "
            "rsrefseg-tiny (RSRefSeg). Its architecture's recipe gives the defaults below.",
            _MODEL,
            "--preset",
        ),
    ] = None,
    pretrained: PretrainedOption = None,
    model_option: Annotated[
        list[str] | None,
        _flag(
            "KEY=VALUE: an option of the preset's model, repeatable (RSRefSeg: lora_rank, "
            "lora_alpha, lora_dropout, down_spatial_times, norm, dense_prompt, mask_padding, "
            "context_layers, text_lora; both: mask_threshold, max_tokens). The trained folder "
            "records it.",
            _MODEL,
            "--model-option",
        ),
    ] = None,
    epochs: Annotated[int | None, _flag("Epochs (40 | 200).", _RECIPE, "--epochs")] = None,
    batch_size: Annotated[
        int | None, _flag("GLOBAL batch over all processes (32 | 32).", _RECIPE, "--batch-size")
    ] = None,
    device_batch: Annotated[
        int | None,
        _flag(
            "Samples per forward pass on one process; smaller than batch/processes means "
            "gradient accumulation (default: batch/processes).",
            _RECIPE,
            "--device-batch",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        _flag(
            "Peak learning rate (5e-5 | 1e-4). DiffRIS's 5e-5 is a choice: the paper's figure "
            "is missing from its text (5e-5 follows LAVT/VPD).",
            _RECIPE,
            "--lr",
        ),
    ] = None,
    weight_decay: Annotated[
        float | None, _flag("AdamW weight decay (0.01 | 0.05).", _RECIPE, "--weight-decay")
    ] = None,
    schedule: Annotated[
        str | None,
        _flag(
            "Learning-rate schedule: poly, or warmup-cosine (linear warm-up from 0.01x, then "
            "cosine to 1e-3x) (poly | warmup-cosine).",
            _RECIPE,
            "--schedule",
        ),
    ] = None,
    warmup_epochs: Annotated[
        float | None,
        _flag(
            "Warm-up epochs of warmup-cosine, may be fractional (0 | 5).",
            _RECIPE,
            "--warmup-epochs",
        ),
    ] = None,
    poly_power: Annotated[
        float | None,
        _flag("poly schedule: exponent of (1 - it/total) (0.9).", _RECIPE, "--poly-power"),
    ] = None,
    image_size: Annotated[
        int | None,
        _flag(
            "Network input and ground-truth side in px, multiple of 64 (512 | 1024).",
            _RECIPE,
            "--image-size",
        ),
    ] = None,
    loss: Annotated[
        str | None,
        _flag(
            "bce or bce+dice, weighted as the model's recipe: DiffRIS BCE 1 (+ Dice 1, its "
            "default), RSRefSeg BCE 5 (its default; + Dice 5 as RSRefSeg2).",
            _RECIPE,
            "--loss",
        ),
    ] = None,
    bce_weight: Annotated[
        float | None,
        _flag("Weight of the BCE loss; wins over --loss (1 | 5).", _RECIPE, "--bce-weight"),
    ] = None,
    dice_weight: Annotated[
        float | None,
        _flag("Weight of the Dice loss; wins over --loss (1 | 0).", _RECIPE, "--dice-weight"),
    ] = None,
    select_by: Annotated[
        str | None,
        _flag(
            "Validation score that picks best/: oIoU or mIoU (oIoU | mIoU).",
            _RECIPE,
            "--select-by",
        ),
    ] = None,
    precision: Annotated[
        str | None, _flag("fp32 (default), bf16 or fp16 (autocast).", _RECIPE, "--precision")
    ] = None,
    seed: Annotated[int | None, _flag("Seed of everything random (0).", _RECIPE, "--seed")] = None,
    cache_latents: Annotated[
        bool | None,
        _flag(
            "Encode each training image with the VAE once and reuse it every epoch.",
            _RECIPE,
            "--cache-latents/--no-cache-latents",
        ),
    ] = None,
    val_every: Annotated[
        int | None, _flag("Validate every N epochs (1).", _RECIPE, "--val-every")
    ] = None,
    average_from: Annotated[
        int | None,
        _flag(
            "Stochastic weight averaging: from the end of epoch N on, validate and save the mean "
            "of the weights at each epoch end (training goes on from its own); off by default.",
            _RECIPE,
            "--average-from",
        ),
    ] = None,
    train_split: Annotated[
        str | None, _flag("Split to train on.", _RECIPE, "--train-split")
    ] = None,
    val_split: Annotated[
        str | None, _flag('Split to validate on ("" for none).', _RECIPE, "--val-split")
    ] = None,
    no_global_context: Annotated[
        bool, _flag("Ablation: CP-adapter without global context.", _MODEL, "--no-global-context")
    ] = False,
    no_object_reasoning: Annotated[
        bool,
        _flag("Ablation: CP-adapter without object reasoning.", _MODEL, "--no-object-reasoning"),
    ] = False,
    no_domain_adjustment: Annotated[
        bool,
        _flag("Ablation: CP-adapter without domain adjustment.", _MODEL, "--no-domain-adjustment"),
    ] = False,
    no_multi_scale: Annotated[
        bool, _flag("Ablation: PCMRD without multi-scale fusion.", _MODEL, "--no-multi-scale")
    ] = False,
    no_query_tokens: Annotated[
        bool,
        _flag("Ablation: no query tokens (dynamic convolution).", _MODEL, "--no-query-tokens"),
    ] = False,
    soft_assignment: Annotated[
        bool,
        _flag("Ablation: soft instead of hard Gumbel assignment.", _MODEL, "--soft-assignment"),
    ] = False,
    gpus: Annotated[
        int | None, _flag("CUDA processes to start (default: 1 if CUDA, else 0).", _RUN, "--gpus")
    ] = None,
    procs: Annotated[
        int | None, _flag("CPU processes (gloo) when --gpus 0 (1).", _RUN, "--procs")
    ] = None,
    workers: Annotated[
        int | None, _flag("Data-loader workers per process (2).", _RUN, "--workers")
    ] = None,
    threads: Annotated[
        int | None, _flag("Torch threads per process (CPUs / processes).", _RUN, "--threads")
    ] = None,
    save_every: Annotated[
        int | None,
        _flag(
            "Also save the resumable state every N steps (200; 0 = epoch ends).",
            _RUN,
            "--save-every",
        ),
    ] = None,
    max_steps: Annotated[
        int | None, _flag("Stop after N optimiser steps (smoke tests).", _RUN, "--max-steps")
    ] = None,
    deterministic: Annotated[
        bool, _flag("torch.use_deterministic_algorithms.", _RUN, "--deterministic")
    ] = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Train a model's heads (the frozen foundations stay frozen; RSRefSeg's LoRA trains).

    The recipe's defaults depend on the model: each preset takes its architecture's recipe,
    shown as (DiffRIS | RSRefSeg) in the options. DiffRIS (tiny, sd15): AdamW lr 5e-5, wd
    0.01, poly schedule, BCE 1 + Dice 1, 512 px, 40 epochs, best epoch by val oIoU. RSRefSeg
    (rsrefseg-*), the authors': AdamW lr 1e-4, wd 0.05, 5 warm-up epochs then cosine, BCE 5,
    1024 px, 200 epochs, best epoch by val mIoU. Flags and --config override them.

    Examples:

      diffris train --dataset risbench --data-root /data/RISBench --gpus 8 -o runs/risbench

      diffris train --dataset synthetic --data-root synth/ --preset tiny --epochs 5 -o runs/demo

      diffris train --dataset rrsisd --data-root /data/RRSIS-D --preset rsrefseg-b --gpus 8 -o runs/b

      diffris train --resume runs/risbench

      torchrun --nnodes 2 --nproc-per-node 8 ... -m diffris_cli.train --dataset risbench ... -o runs/x
    """
    from diffris.devices import Precision
    from diffris.models.names import LOSS_NAMES, parse_pretrained
    from diffris.train import Ablation
    from diffris.train.config import TRAIN_DATASETS
    from diffris.train.launch import train as run_training
    from diffris_cli.train_progress import training_progress

    if resume is not None and output is not None and output != resume:
        raise InputError(f"-o {output} and --resume {resume} differ; --resume alone names the run")
    folder = resume or output
    if folder is None:
        raise InputError("no run folder given; pass -o runs/NAME (or --resume runs/NAME)")
    flags = {
        "global_context": no_global_context,
        "object_reasoning": no_object_reasoning,
        "domain_adjustment": no_domain_adjustment,
        "multi_scale": no_multi_scale,
        "query_tokens": no_query_tokens,
        "hard_assignment": soft_assignment,
    }
    switches = {field: False for field, off in flags.items() if off}
    overrides: dict[str, Any] = {
        "dataset": dataset,
        "data_root": str(data_root) if data_root is not None else None,
        "preset": preset,
        "pretrained": parse_pretrained(pretrained),
        "epochs": epochs,
        "batch_size": batch_size,
        "device_batch": device_batch,
        "lr": lr,
        "weight_decay": weight_decay,
        "poly_power": poly_power,
        "schedule": schedule,
        "warmup_epochs": warmup_epochs,
        "image_size": image_size,
        "bce_weight": bce_weight,
        "dice_weight": dice_weight,
        "select_by": select_by,
        "precision": parse_enum(Precision, precision, "--precision") if precision else None,
        "seed": seed,
        "cache_latents": cache_latents,
        "val_every": val_every,
        "average_from": average_from,
        "train_split": train_split,
        "val_split": val_split,
    }
    if loss is not None and loss not in LOSS_NAMES:
        raise InputError(f"--loss {loss!r} is not one of: {', '.join(LOSS_NAMES)}")
    base = read_config_file(config_file)
    if model_option:
        base["model_options"] = {
            **base.get("model_options", {}),
            **parse_model_options(model_option),
        }
    if switches:
        base["ablation"] = Ablation.from_dict({**base.get("ablation", {}), **switches}).to_dict()
    given = {key: value for key, value in overrides.items() if value is not None}
    config: TrainConfig | None
    if resume is not None:
        from diffris.train.run_folder import check_run_folder

        check_run_folder(resume, resume=True, overwrite=overwrite)  # before reading its config
        # only what the user actually set is compared with the saved run
        config = None if not (given or base or loss) else _resume_check(resume, base, given, loss)
    else:
        if dataset is None and "dataset" not in base:
            raise InputError(f"no --dataset given; choose one of: {', '.join(TRAIN_DATASETS)}")
        config = build_config(base, overrides, loss)
    launch_flags = (gpus, procs, workers, threads, save_every, max_steps, deterministic)
    launch = (
        _resumed_launch(resume, *launch_flags)
        if resume is not None
        else _launch_options(*launch_flags)
    )
    with training_progress(quiet=quiet or as_json) as on_event:
        result = run_training(
            config,
            folder,
            launch=launch,
            resume=resume is not None,
            overwrite=overwrite,
            on_event=on_event,
        )
    if as_json:
        out_console.print_json(json.dumps(result.__dict__))
    elif not quiet:
        best = result.best
        summary = (
            f"best epoch {best['epoch']}: oIoU {best['scores']['oIoU']:.2f}, "
            f"mIoU {best['scores']['mIoU']:.2f}"
            if best
            else "not validated"
        )
        state = "finished" if result.finished else "stopped (resume with --resume)"
        out_console.print(
            f"{result.run}: {state} after {result.steps} steps in {result.seconds:.0f} s; {summary}"
        )


def parse_model_options(values: list[str]) -> dict[str, Any]:
    """``--model-option KEY=VALUE`` values as a mapping; VALUE read as a YAML scalar
    (``16``, ``0.1``, ``true``, ``group``).

    Raises:
        InputError: a value without ``=``, a key given twice, or a VALUE that is not a scalar.
    """
    import yaml

    options: dict[str, Any] = {}
    for text in values:
        key, sep, raw = text.partition("=")
        if not sep or not key or not raw:
            raise InputError(
                f"--model-option {text!r} is not KEY=VALUE; write e.g. --model-option lora_rank=8"
            )
        if key in options:
            raise InputError(f"--model-option {key}= given twice; give each option once")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = None
        if not isinstance(value, bool | int | float | str):
            raise InputError(
                f"--model-option {text}: {raw!r} is not a plain value; give a number, true/false "
                "or a word"
            )
        options[key] = value
    return options


def _resume_check(
    folder: Path, base: dict[str, Any], given: dict[str, Any], loss: str | None
) -> TrainConfig:
    """The saved config with the given flags applied (the library refuses any difference)."""
    from diffris.train.run_folder import RunFolder, read_config

    saved = read_config(RunFolder(folder)).to_dict()
    return build_config({**saved, **base}, given, loss)


def _resumed_launch(
    folder: Path,
    gpus: int | None,
    procs: int | None,
    workers: int | None,
    threads: int | None,
    save_every: int | None,
    max_steps: int | None,
    deterministic: bool,
) -> LaunchOptions:
    """The run's saved launch options with the flags actually given applied (the library warns
    about those that change the numbers)."""
    from diffris.train.resume import resume_launch

    if gpus is not None and gpus > 0 and procs not in (None, 1):
        raise InputError(f"--procs {procs} is for CPU training; with --gpus {gpus} leave it out")
    values: dict[str, Any] = {
        "gpus": 0 if gpus is None and procs is not None else gpus,  # --procs means CPU
        "procs": 1 if gpus else procs,
        "workers": workers,
        "threads": threads,
        "save_every": save_every,
        "max_steps": max_steps,
        "deterministic": deterministic or None,
    }
    return resume_launch(folder, **{k: v for k, v in values.items() if v is not None})


def _launch_options(
    gpus: int | None,
    procs: int | None,
    workers: int | None,
    threads: int | None,
    save_every: int | None,
    max_steps: int | None,
    deterministic: bool,
) -> LaunchOptions:
    from diffris.train import LaunchOptions
    from diffris.train.distributed import torchrun_env

    if torchrun_env() is not None and (gpus is not None or procs is not None):
        log.info("running under torchrun: --gpus/--procs are ignored (torchrun starts the ranks)")
    if gpus is None:
        import torch

        gpus = 1 if torch.cuda.is_available() and not procs else 0
    if gpus > 0 and procs not in (None, 1):
        raise InputError(f"--procs {procs} is for CPU training; with --gpus {gpus} leave it out")
    values: dict[str, Any] = {
        "gpus": gpus,
        "procs": procs,
        "workers": workers,
        "threads": threads,
        "save_every": save_every,
        "max_steps": max_steps,
        "deterministic": deterministic,
    }
    return LaunchOptions.from_dict({k: v for k, v in values.items() if v is not None})


def main() -> None:
    """``python -m diffris_cli.train``: this command alone (e.g. under torchrun)."""
    from diffris_cli.helptext import DiffrisCommand
    from diffris_cli.logs import configure_logging

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(cls=DiffrisCommand)(train)
    configure_logging(0, False)
    app()


if __name__ == "__main__":
    main()
