"""The learning-rate schedule and the per-chunk random seeds: both pure functions of the step."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from typing import Any, Protocol


class Schedule(enum.Enum):
    """Learning-rate schedules ``TrainConfig.schedule`` names."""

    POLY = "poly"
    WARMUP_COSINE = "warmup-cosine"


class LRSchedule(Protocol):
    """What the trainer asks of a schedule: the rate of a step, and its numbers for the state."""

    def lr(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-able values."""
        ...


@dataclasses.dataclass(frozen=True)
class PolySchedule:
    """lr(it) = base_lr · (1 − it / total_steps) ** power, the LAVT/VPD convention.

    Computed in closed form from the step (no multiplicative chain), so a resumed run gets the
    very same floats, and the state is just these three numbers.

    Attributes:
        base_lr: the peak learning rate.
        total_steps: optimiser steps of the whole run (epochs × steps per epoch).
        power: the exponent (0.9).
    """

    base_lr: float
    total_steps: int
    power: float = 0.9

    def lr(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based)."""
        remaining = max(0.0, 1.0 - step / max(self.total_steps, 1))
        return self.base_lr * remaining**self.power

    def state_dict(self) -> dict[str, Any]:
        """JSON-able values."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class WarmupCosineSchedule:
    """A linear warm-up from ``warmup_start``× then a cosine down to ``final_ratio``×.

    For step s of T, W warm-up steps, base rate b, start factor a and final ratio f::

        s < W:  lr = b · (a + (1 − a) · s / W)
        s ≥ W:  lr = b · (f + (1 − f) · (1 + cos(π · (s − W) / (T − W))) / 2)

    Closed form in the step, like :class:`PolySchedule`, so a resumed run gets the same floats.
    A warm-up as long as the run (W ≥ T) never reaches the cosine.

    Attributes:
        base_lr: the peak learning rate b, reached at the end of the warm-up.
        total_steps: optimiser steps of the whole run (epochs × steps per epoch).
        warmup_steps: steps of the linear warm-up (0: the cosine from the first step).
        warmup_start: the factor of ``base_lr`` at step 0 (RSRefSeg: 0.01).
        final_ratio: the factor of ``base_lr`` the cosine ends at (RSRefSeg: 1e-3).
    """

    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    warmup_start: float = 0.01
    final_ratio: float = 1e-3

    def lr(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            ramp = step / self.warmup_steps
            return self.base_lr * (self.warmup_start + (1.0 - self.warmup_start) * ramp)
        progress = min(
            1.0, (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        )
        cosine = (1.0 + math.cos(math.pi * progress)) / 2.0
        return self.base_lr * (self.final_ratio + (1.0 - self.final_ratio) * cosine)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able values."""
        return dataclasses.asdict(self)


def make_schedule(config: Any, steps_per_epoch: int) -> LRSchedule:
    """The schedule a training config names, over ``config.epochs × steps_per_epoch`` steps.

    Args:
        config: a :class:`~diffris.train.config.TrainConfig` (its ``schedule``, ``lr``,
            ``poly_power``, ``warmup_epochs``, ``warmup_start``, ``final_lr_ratio``).
        steps_per_epoch: optimiser steps per epoch.
    """
    total = config.epochs * steps_per_epoch
    if Schedule(config.schedule) is Schedule.POLY:
        return PolySchedule(config.lr, total, config.poly_power)
    return WarmupCosineSchedule(
        config.lr,
        total,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        warmup_start=config.warmup_start,
        final_ratio=config.final_lr_ratio,
    )


def chunk_seed(seed: int, step: int, chunk: int) -> int:
    """The torch seed of one micro-batch: a hash of (run seed, optimiser step, chunk number).

    Seeding every forward pass with this makes its randomness (the OAQIL's Gumbel noise) a
    function of *which samples* it sees, not of how many processes there are or of whether the
    run was resumed.

    Returns:
        An integer in [0, 2**63).
    """
    digest = hashlib.sha256(f"diffris-train:{seed}:{step}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
