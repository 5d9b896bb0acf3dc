"""The training recipe and the launch options, both saved in the run's ``config.yaml``.

:class:`TrainConfig` holds everything that decides *what* is computed: data, model, optimiser,
schedule, loss, precision, seed, the per-device micro-batch; a resumed run refuses to change it.
:class:`LaunchOptions` holds *how* it runs (process count, data-loader workers, threads, how
often the state is saved). Some of those change the last bits of the losses (processes, threads,
device kind), so ``--resume`` restores them all and warns about any given differently (see
:mod:`diffris.train.resume`).

The recipe's defaults depend on the model: a field left unset (None) takes the value of the
preset's architecture's recipe (:func:`diffris.models.names.training_recipe`; DiffRIS's in
:mod:`diffris.models.diffris.recipe`, RSRefSeg's in :mod:`diffris.models.rsrefseg.recipe`) when the
config is built, so a built config (and the ``config.yaml`` it writes) is fully resolved. A config
changed with :meth:`~diffris.config.Config.replace` keeps its resolved values: give the recipe's
fields anew when changing ``preset``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from diffris.config import Config
from diffris.devices import Precision
from diffris.errors import InputError
from diffris.models.diffris.cp_adapter import CPAdapterConfig
from diffris.models.diffris.pcmrd import PCMRDConfig
from diffris.models.names import (
    PRESETS,
    PRETRAINED_KEYS,
    check_pretrained_form,
    model_option_names,
    training_recipe,
)
from diffris.train.schedule import Schedule

#: Datasets ``TrainConfig.dataset`` accepts; ``synthetic`` is a folder written by
#: :func:`diffris.data.synthetic.write_dataset` in any of the three layouts.
TRAIN_DATASETS = ("rrsisd", "refsegrs", "risbench", "synthetic")


_KINDS: dict[type, tuple[type, ...]] = {
    bool: (bool,),
    int: (int,),
    float: (int, float),
    str: (str,),
}
_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a text"}


def check_types(config: Any) -> None:
    """Refuse a field of a plain type (bool, int, float, str, optionally None) that holds another.

    A config read from YAML can hold anything (``epochs: "ten"``); this names the field instead
    of failing later in a comparison.

    Raises:
        InputError: ``--<field> <value> is not <kind>``.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        hint, value = hints[field.name], getattr(config, field.name)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            if value is None:
                continue
            options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
            hint = options[0] if len(options) == 1 else None
        kinds = _KINDS.get(hint)  # type: ignore[arg-type]
        if kinds is None:
            continue
        if not isinstance(value, kinds) or (hint is not bool and isinstance(value, bool)):
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise InputError(
                f"--{field.name.replace('_', '-')} {shown} is not {_KIND_NAMES[hint]}"  # type: ignore[index]
            )


@dataclasses.dataclass(frozen=True)
class Ablation(Config):
    """Switches of the paper's ablations; all on is the full DiffRIS.

    Attributes:
        global_context: CP-adapter global context modelling (Table 4).
        object_reasoning: CP-adapter object-aware reasoning (Table 4).
        domain_adjustment: CP-adapter domain-specific adjustment (Table 4).
        multi_scale: PCMRD multi-scale fusion (Table 6).
        query_tokens: PCMRD query tokens + OAQIL; off = dynamic convolution (Table 6).
        hard_assignment: OAQIL straight-through Gumbel hard assignment; off = soft (Table 6).
    """

    global_context: bool = True
    object_reasoning: bool = True
    domain_adjustment: bool = True
    multi_scale: bool = True
    query_tokens: bool = True
    hard_assignment: bool = True

    def apply(
        self, adapter: CPAdapterConfig, decoder: PCMRDConfig
    ) -> tuple[CPAdapterConfig, PCMRDConfig]:
        """``adapter`` and ``decoder`` with these switches set."""
        return (
            adapter.replace(
                global_context=self.global_context,
                object_reasoning=self.object_reasoning,
                domain_adjustment=self.domain_adjustment,
            ),
            decoder.replace(
                multi_scale=self.multi_scale,
                query_tokens=self.query_tokens,
                hard_assignment=self.hard_assignment,
            ),
        )


class SelectBy(enum.Enum):
    """The validation score that picks the best epoch (``best/``)."""

    OIOU = "oIoU"
    MIOU = "mIoU"


#: The preset a config without ``preset`` trains.
DEFAULT_PRESET = "sd15"
#: Fields whose default is the preset's recipe (None until the config is built).
RECIPE_FIELDS = (
    "epochs",
    "batch_size",
    "image_size",
    "lr",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "bce_weight",
    "dice_weight",
    "select_by",
)
_ENUMS = {"schedule": Schedule, "select_by": SelectBy}

#: Bounds of the sizes a run could allocate (a typo such as ``image_size: 5120000`` would ask
#: for terabytes before the first step).
MAX_IMAGE_SIZE = 8192
MAX_BATCH = 65536


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Everything that decides a training run's numbers; saved as the run's ``config.yaml``.

    Attributes:
        dataset: ``rrsisd``, ``refsegrs``, ``risbench`` or ``synthetic`` (layout detected).
        data_root: the dataset folder.
        train_split: split trained on.
        val_split: split validated on after every ``val_every`` epochs ("" = no validation).
        preset: model preset (``sd15``, ``rsrefseg-b``, ``rsrefseg-l``; ``tiny`` and
            ``rsrefseg-tiny`` for tests and the demo models). Its architecture's recipe gives
            the defaults of the fields marked *recipe*.
        pretrained: the frozen foundations' folders: one folder (DiffRIS: Stable Diffusion
            1.5), ``{"siglip": DIR, "sam": DIR}`` (RSRefSeg), or None (environment variables,
            the cache); see :data:`diffris.models.names.Pretrained`.
        cp_adapter: CP-adapter sizes; None = the preset's default.
        pcmrd: decoder sizes; None = the preset's default.
        ablation: component switches, applied on top of ``cp_adapter`` and ``pcmrd``.
        model_options: options of the preset's architecture, recorded in the trained folder's
            config (RSRefSeg: ``lora_rank``, ``mask_padding``, ...; see
            :func:`diffris.models.names.model_option_names`); unset ones keep the preset's.
        latent_scale: VAE latent multiplier; None = the model default (0.18215).
        timestep: UNet timestep; None = the model default (1).
        epochs: passes over the training split (*recipe*).
        batch_size: GLOBAL batch: samples per optimiser step over all processes (*recipe*).
        device_batch: samples per forward pass on one process (micro-batch); gradients are
            accumulated over ``batch_size / (processes * device_batch)`` micro-batches. None =
            ``batch_size / processes`` (no accumulation), fixed when the run starts.
        lr: peak learning rate (*recipe*; DiffRIS's 5e-5 is a choice, the paper's figure is
            missing from its text).
        weight_decay: AdamW decoupled weight decay (*recipe*).
        betas: AdamW betas.
        eps: AdamW epsilon.
        poly_power: ``poly`` schedule: lr(it) = lr * (1 - it / total) ** poly_power.
        schedule: ``poly`` or ``warmup-cosine`` (*recipe*; see :mod:`diffris.train.schedule`).
        warmup_epochs: ``warmup-cosine``: epochs of linear warm-up (*recipe* when the schedule
            is the recipe's, else 0); may be fractional.
        warmup_start: ``warmup-cosine``: the factor of ``lr`` the warm-up starts at.
        final_lr_ratio: ``warmup-cosine``: the factor of ``lr`` the cosine ends at.
        image_size: square network input S in px, a multiple of 64 (*recipe*).
        precision: fp32, bf16 or fp16 (autocast; fp16 adds a GradScaler).
        bce_weight: weight of the pixel-wise binary cross-entropy (*recipe*).
        dice_weight: weight of the soft Dice loss (*recipe*).
        select_by: validation score picking the best epoch, ``oIoU`` or ``mIoU`` (*recipe*).
        seed: heads' initialisation, data order and Gumbel noise all derive from it.
        cache_latents: compute each training image's VAE latent once and reuse it every epoch.
        val_every: validate every this many epochs (and after the last).
        average_from: stochastic weight averaging (:mod:`diffris.train.averaging`): from the
            end of this epoch on, validation scores and ``last/``/``best/`` hold the mean of
            the weights at the ends of epochs ``average_from`` .. now; None = the weights as
            trained.
    """

    dataset: str = "risbench"
    data_root: str = ""
    train_split: str = "train"
    val_split: str = "val"
    preset: str = DEFAULT_PRESET
    pretrained: str | dict[str, str] | None = None
    cp_adapter: CPAdapterConfig | None = None
    pcmrd: PCMRDConfig | None = None
    ablation: Ablation = dataclasses.field(default_factory=Ablation)
    model_options: dict[str, bool | int | float | str] = dataclasses.field(default_factory=dict)
    latent_scale: float | None = None
    timestep: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    device_batch: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    poly_power: float = 0.9
    schedule: Schedule | None = None
    warmup_epochs: float | None = None
    warmup_start: float = 0.01
    final_lr_ratio: float = 1e-3
    image_size: int | None = None
    precision: Precision = Precision.FP32
    bce_weight: float | None = None
    dice_weight: float | None = None
    select_by: SelectBy | None = None
    seed: int = 0
    cache_latents: bool = False
    val_every: int = 1
    average_from: int | None = None

    def __post_init__(self) -> None:
        check_types(self)
        self._resolve_recipe()
        self._check_pretrained()
        self._check_model_options()
        self._check_schedule()
        if self.dataset not in TRAIN_DATASETS:
            raise InputError(
                f"--dataset {self.dataset!r} is not one of: {', '.join(TRAIN_DATASETS)}"
            )
        if not self.data_root:
            raise InputError("no --data-root given; pass the dataset folder")
        for name in ("epochs", "batch_size", "image_size", "val_every"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)} must be ≥ 1")
        if self.image_size % 64:
            raise InputError(
                f"--image-size {self.image_size} is not a multiple of 64; use e.g. 512"
            )
        if self.average_from is not None and not 1 <= self.average_from <= self.epochs:
            raise InputError(
                f"--average-from {self.average_from} is not an epoch of this "
                f"{self.epochs}-epoch run; give 1 to {self.epochs}, e.g. "
                f"{self.epochs * 2 // 3 + 1} (the last third)"
            )
        if self.device_batch is not None and self.device_batch < 1:
            raise InputError(f"--device-batch {self.device_batch} must be ≥ 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr {self.lr} must be a positive number; e.g. 5e-5")
        if self.weight_decay < 0 or self.poly_power < 0:
            raise InputError("--weight-decay and --poly-power must be ≥ 0")
        if self.bce_weight < 0 or self.dice_weight < 0 or self.bce_weight + self.dice_weight == 0:
            raise InputError("loss weights must be ≥ 0 and not both 0; e.g. BCE 1, Dice 1")
        if self.seed < 0:
            raise InputError(f"--seed {self.seed} must be ≥ 0")
        for name, limit in (("image_size", MAX_IMAGE_SIZE), ("batch_size", MAX_BATCH)):
            if getattr(self, name) > limit:
                raise InputError(
                    f"--{name.replace('_', '-')} {getattr(self, name)} is more than {limit}, "
                    "more than any device holds; use e.g. 512 (image size) or 32 (batch)"
                )

    def _resolve_recipe(self) -> None:
        """Fill the fields left unset from the preset's recipe (enums from their names)."""
        if self.preset not in PRESETS:
            raise InputError(f"--preset {self.preset!r} is not one of: {', '.join(PRESETS)}")
        recipe = training_recipe(self.preset)
        for name in RECIPE_FIELDS:
            value = getattr(self, name)
            if value is None and name == "warmup_epochs":
                same = self.schedule is None or _enum("schedule", self.schedule) is _enum(
                    "schedule", recipe["schedule"]
                )
                value = recipe[name] if same else 0.0  # a warm-up belongs to its schedule
            elif value is None:
                value = recipe[name]
            if name in _ENUMS:
                value = _enum(name, value)
            object.__setattr__(self, name, value)

    def _check_pretrained(self) -> None:
        pretrained = self.pretrained
        if isinstance(pretrained, Mapping):
            bad = [k for k, v in pretrained.items() if k not in PRETRAINED_KEYS or not v]
            if bad or not all(isinstance(v, str) for v in pretrained.values()):
                raise InputError(
                    f"--pretrained {cut_mapping(pretrained)}: give KEY=DIR with KEY one of "
                    f"{', '.join(PRETRAINED_KEYS)} and DIR a folder"
                )
            object.__setattr__(self, "pretrained", dict(pretrained))
        elif pretrained is not None and not isinstance(pretrained, str):
            raise InputError(
                f"--pretrained {pretrained!r} must be a folder or a mapping of "
                f"{'/'.join(PRETRAINED_KEYS)} to folders"
            )
        check_pretrained_form(self.preset, self.pretrained)

    def _check_model_options(self) -> None:
        """Names and values checked here, by the architecture's own config, before any run."""
        options = self.model_options
        if not isinstance(options, Mapping):
            raise InputError(
                f"model_options must be a mapping of option names to values, got {options!r}"
            )
        valid = model_option_names(self.preset)
        for name in options:
            if name not in valid:
                raise InputError(
                    f"--model-option {name}: not an option of {self.preset}; valid: "
                    f"{', '.join(valid)}"
                )
        if options:  # the values' types and ranges: the architecture's config checks them
            from diffris.models.registry import architecture, architecture_of

            config_class = architecture(architecture_of(self.preset)).CONFIG_CLASS
            try:
                config_class.from_dict(dict(options))
            except InputError as err:
                raise InputError(f"--model-option {err}") from err
        object.__setattr__(self, "model_options", dict(options))

    def _check_schedule(self) -> None:
        assert self.warmup_epochs is not None  # resolved
        if not (self.warmup_epochs >= 0 and math.isfinite(self.warmup_epochs)):
            raise InputError(f"--warmup-epochs {self.warmup_epochs} must be ≥ 0")
        if self.schedule is Schedule.POLY and self.warmup_epochs > 0:
            raise InputError(
                f"--warmup-epochs {self.warmup_epochs:g} applies to --schedule warmup-cosine; "
                "with --schedule poly leave it out (or give 0)"
            )
        if not 0 < self.warmup_start <= 1:
            raise InputError(f"warmup_start {self.warmup_start} must be in (0, 1]; e.g. 0.01")
        if not 0 <= self.final_lr_ratio <= 1:
            raise InputError(f"final_lr_ratio {self.final_lr_ratio} must be in [0, 1]; e.g. 1e-3")

    def warmup_warning(self) -> str | None:
        """A sentence when the warm-up spans the whole run (the learning rate then never
        reaches ``lr``: the recipe's 5-epoch warm-up on a short run), else None."""
        if self.schedule is not Schedule.WARMUP_COSINE or self.warmup_epochs < self.epochs:
            return None
        return (
            f"the warm-up of {self.warmup_epochs:g} epochs spans the whole {self.epochs}-epoch "
            f"run, so the learning rate never reaches --lr {self.lr:g}; give --warmup-epochs "
            f"{self.epochs / 10:g} (a tenth of the run) or --schedule poly"
        )

    def micro_batches(self, world_size: int) -> int:
        """Micro-batches accumulated per optimiser step on each of ``world_size`` processes.

        Raises:
            InputError: the global batch is not a multiple of ``world_size * device_batch``.
        """
        device_batch = self.device_batch or self.batch_size // max(world_size, 1)
        per_step = world_size * device_batch
        if device_batch < 1 or self.batch_size % per_step:
            raise InputError(
                f"--batch-size {self.batch_size} (global) is not a multiple of {world_size} "
                f"process(es) x --device-batch {device_batch} = {per_step}; choose a process "
                "count and device batch whose product divides the global batch"
            )
        return self.batch_size // per_step

    def for_world(self, world_size: int) -> TrainConfig:
        """This config with ``device_batch`` fixed for ``world_size`` processes (checked)."""
        device_batch = self.device_batch or self.batch_size // max(world_size, 1)
        resolved = dataclasses.replace(self, device_batch=max(device_batch, 1))
        resolved.micro_batches(world_size)
        return resolved


def _enum(name: str, value: Any) -> Any:
    """``value`` as the enum of field ``name`` (already one, or its value)."""
    kind = _ENUMS[name]
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError as err:
        valid = ", ".join(str(member.value) for member in kind)
        flag = "--" + name.replace("_", "-")
        raise InputError(f"{flag} {value!r} is not one of: {valid}") from err


def cut_mapping(values: Mapping[Any, Any]) -> str:
    """A mapping as ``k=v k=v`` for messages (clipped)."""
    shown = " ".join(f"{k}={v}" for k, v in values.items())
    return shown if len(shown) <= 80 else shown[:77] + "..."


@dataclasses.dataclass(frozen=True)
class LaunchOptions(Config):
    """How a run executes; restored by ``--resume`` (threads and processes change the last bits).

    Attributes:
        gpus: CUDA processes to start (one per device, NCCL); 0 = CPU processes (gloo).
        procs: CPU processes to start when ``gpus`` is 0 (gloo); ignored under torchrun.
        workers: data-loader worker processes per training process.
        threads: torch threads per process; None = the CPU count divided by the processes.
        save_every: also save the resumable state every this many optimiser steps (0 = only
            at epoch ends).
        max_steps: stop after this many optimiser steps in total (the schedule still spans all
            epochs); None = run every epoch. For smoke tests and benchmarks.
        deterministic: ``torch.use_deterministic_algorithms`` (and cuDNN determinism).
        log_every: write a step line to ``metrics.jsonl`` every this many steps.
    """

    gpus: int = 0
    procs: int = 1
    workers: int = 2
    threads: int | None = None
    save_every: int = 200
    max_steps: int | None = None
    deterministic: bool = False
    log_every: int = 1

    def __post_init__(self) -> None:
        check_types(self)
        if self.gpus < 0 or self.procs < 1:
            raise InputError(f"--gpus {self.gpus} must be ≥ 0 and --procs {self.procs} ≥ 1")
        if self.workers < 0 or self.save_every < 0 or self.log_every < 1:
            raise InputError("--workers and --save-every must be ≥ 0, --log-every ≥ 1")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads {self.threads} must be ≥ 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"--max-steps {self.max_steps} must be ≥ 1")

    @property
    def world_size(self) -> int:
        """Processes this launch starts on this machine."""
        return self.gpus if self.gpus > 0 else self.procs
