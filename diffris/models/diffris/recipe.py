"""DiffRIS's training recipe: the defaults ``diffris train`` gives a DiffRIS preset.

The paper's section 4.1.3 (see MODEL.md): AdamW, weight decay 0.01, global batch 32, 40 epochs,
512² input, best epoch by validation oIoU. Where the paper is silent, marked choices: learning
rate 5e-5 (the figure is missing from its text; LAVT/VPD's), a poly schedule (1 - it/total)^0.9
and BCE + Dice. Plain values only (no torch): :func:`diffris.models.names.training_recipe`
reads it for the CLI and :class:`diffris.train.TrainConfig`.
"""

from __future__ import annotations

#: TrainConfig field -> default for this architecture (fields left unset take these).
RECIPE: dict[str, object] = {
    "epochs": 40,
    "batch_size": 32,
    "image_size": 512,
    "lr": 5e-5,
    "weight_decay": 0.01,
    "schedule": "poly",
    "warmup_epochs": 0.0,
    "bce_weight": 1.0,
    "dice_weight": 1.0,
    "select_by": "oIoU",
}
#: The model options ``diffris train --model-option KEY=VALUE`` may set (the CP-adapter, the
#: decoder, the latent scale and the timestep have TrainConfig fields of their own).
MODEL_OPTIONS: tuple[str, ...] = ("mask_threshold", "max_tokens")
#: ``--loss`` -> (bce_weight, dice_weight); BCE + Dice is the default.
LOSSES: dict[str, tuple[float, float]] = {"bce": (1.0, 0.0), "bce+dice": (1.0, 1.0)}
