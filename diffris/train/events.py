"""What a training run reports while it runs (rank 0) and when it ends.

Plain frozen dataclasses: they are written to ``metrics.jsonl`` as they are, and sent from a
spawned rank 0 to the launching process through a queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepEvent:
    """One optimiser step finished.

    Attributes:
        epoch: 1-based epoch the step belongs to.
        epochs: epochs of the run.
        step: optimiser steps done so far (1-based number of this step).
        total_steps: optimiser steps of the whole run.
        loss: mean loss over the step's global batch.
        lr: learning rate the step used.
        samples_per_s: training samples per second over all processes (smoothed).
        eta_s: seconds left at that pace, validation not included.
    """

    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float
    lr: float
    samples_per_s: float
    eta_s: float


@dataclass(frozen=True)
class EpochEvent:
    """An epoch finished (and was validated, if due).

    Attributes:
        epoch: 1-based number of the finished epoch.
        epochs: epochs of the run.
        step: optimiser steps done so far.
        train_loss: mean step loss of the epoch.
        val: validation scores (``Scores.to_dict()``: n, Pr@X, oIoU, mIoU, per_category), or
            None when not validated this epoch.
        best_epoch: the epoch with the best validation score so far (``select_by``).
        averaged_epochs: (first, last) epoch whose end weights were averaged into what was
            validated and saved (``average_from``), or None: the weights as trained.
    """

    epoch: int
    epochs: int
    step: int
    train_loss: float
    val: dict[str, Any] | None
    best_epoch: int | None
    averaged_epochs: tuple[int, int] | None = None


@dataclass(frozen=True)
class TrainResult:
    """How a run (or this part of it) ended.

    Attributes:
        run: the run folder.
        steps: optimiser steps done in total.
        epochs: epochs finished.
        best: ``{"epoch", "step", "scores"}`` of the best validated epoch, or None.
        last_loss: loss of the last step run by this call (None if it ran none).
        seconds: wall time of this call.
        finished: every epoch is done (False when stopped by ``max_steps``).
    """

    run: str
    steps: int
    epochs: int
    best: dict[str, Any] | None
    last_loss: float | None
    seconds: float
    finished: bool
