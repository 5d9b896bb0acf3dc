"""Training DiffRIS's CP-adapter and PCMRD decoder (the frozen backbone never trains).

``train(TrainConfig(...), "runs/x")`` runs a whole training: one process, N processes it starts
itself (DDP over gloo on CPUs or NCCL on GPUs), or one rank under ``torchrun``. The run folder
holds ``config.yaml``, ``metrics.jsonl``, the ``best/`` and ``last/`` trained-model folders and a
resumable state; ``train(None, "runs/x", resume=True)`` continues it exactly.
"""

from diffris.train.config import Ablation, LaunchOptions, TrainConfig
from diffris.train.events import EpochEvent, StepEvent, TrainResult
from diffris.train.launch import train

__all__ = [
    "Ablation",
    "EpochEvent",
    "LaunchOptions",
    "StepEvent",
    "TrainConfig",
    "TrainResult",
    "train",
]
