"""The learning-rate schedule and the per-chunk random seeds: both pure functions of the step."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any


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
