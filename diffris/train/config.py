"""The training recipe and the launch options, both saved in the run's ``config.yaml``.

:class:`TrainConfig` holds everything that decides *what* is computed: data, model, optimiser,
schedule, loss, precision, seed, the per-device micro-batch; a resumed run refuses to change it.
:class:`LaunchOptions` holds *how* it runs (process count, data-loader workers, threads, how
often the state is saved). Some of those change the last bits of the losses (processes, threads,
device kind), so ``--resume`` restores them all and warns about any given differently (see
:mod:`diffris.train.resume`).

Defaults are the paper's (section 4.1.3, see MODEL.md): AdamW, weight decay 0.01, global batch
32, 40 epochs, 512² input, no augmentation, best epoch by validation oIoU. Where the paper is
silent, the default is a marked choice: learning rate 5e-5 (the paper's figure is missing from its
text) with a poly schedule (1 - it/total)^0.9, and BCE + Dice loss.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from diffris.config import Config
from diffris.devices import Precision
from diffris.errors import InputError
from diffris.models.diffris.cp_adapter import CPAdapterConfig
from diffris.models.diffris.pcmrd import PCMRDConfig

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
        preset: model preset (``sd15``; ``tiny`` for tests and the demo model).
        pretrained: Stable Diffusion 1.5 folder for ``sd15`` (None: ``$DIFFRIS_SD15``/cache).
        cp_adapter: CP-adapter sizes; None = the preset's default.
        pcmrd: decoder sizes; None = the preset's default.
        ablation: component switches, applied on top of ``cp_adapter`` and ``pcmrd``.
        latent_scale: VAE latent multiplier; None = the model default (0.18215).
        timestep: UNet timestep; None = the model default (1).
        epochs: passes over the training split.
        batch_size: GLOBAL batch: samples per optimiser step over all processes.
        device_batch: samples per forward pass on one process (micro-batch); gradients are
            accumulated over ``batch_size / (processes * device_batch)`` micro-batches. None =
            ``batch_size / processes`` (no accumulation), fixed when the run starts.
        lr: peak learning rate (choice: 5e-5; the paper's figure is missing from its text).
        weight_decay: AdamW decoupled weight decay.
        betas: AdamW betas.
        eps: AdamW epsilon.
        poly_power: lr(it) = lr * (1 - it / total) ** poly_power.
        image_size: square network input S in px (a multiple of 64).
        precision: fp32, bf16 or fp16 (autocast; fp16 adds a GradScaler).
        bce_weight: weight of the pixel-wise binary cross-entropy.
        dice_weight: weight of the soft Dice loss.
        seed: heads' initialisation, data order and Gumbel noise all derive from it.
        cache_latents: compute each training image's VAE latent once and reuse it every epoch.
        val_every: validate every this many epochs (and after the last).
    """

    dataset: str = "risbench"
    data_root: str = ""
    train_split: str = "train"
    val_split: str = "val"
    preset: str = "sd15"
    pretrained: str | None = None
    cp_adapter: CPAdapterConfig | None = None
    pcmrd: PCMRDConfig | None = None
    ablation: Ablation = dataclasses.field(default_factory=Ablation)
    latent_scale: float | None = None
    timestep: int | None = None
    epochs: int = 40
    batch_size: int = 32
    device_batch: int | None = None
    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    poly_power: float = 0.9
    image_size: int = 512
    precision: Precision = Precision.FP32
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    seed: int = 0
    cache_latents: bool = False
    val_every: int = 1

    def __post_init__(self) -> None:
        check_types(self)
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
