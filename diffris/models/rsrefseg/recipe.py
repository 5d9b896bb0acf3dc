"""RSRefSeg's training recipe, the authors' (configs ``RSRefSeg-b.py``/``-l.py``): the defaults
``diffris train`` gives an RSRefSeg preset.

BCE with logits × 5 (no Dice; RSRefSeg2 adds Dice × 5, ``--loss bce+dice``), AdamW lr 1e-4,
weight decay 0.05, a linear warm-up over 5 epochs from 0.01× then a cosine to 1e-3× over the
rest of the run (200 epochs), global batch 32, image and ground truth at 1024² (SAM's input),
best epoch by validation mIoU. Here the cosine is computed per optimiser step from the end of
the warm-up to the run's end; the authors' mmengine scheduler steps it once per epoch with
``T_max`` = all 200 epochs counted from epoch 5, so it stops at 2.5e-3× rather than 1e-3×.
Plain values only (no torch): :func:`diffris.models.names.training_recipe` reads it.
"""

from __future__ import annotations

#: TrainConfig field -> default for this architecture (fields left unset take these).
RECIPE: dict[str, object] = {
    "epochs": 200,
    "batch_size": 32,
    "image_size": 1024,
    "lr": 1e-4,
    "weight_decay": 0.05,
    "schedule": "warmup-cosine",
    "warmup_epochs": 5.0,
    "bce_weight": 5.0,
    "dice_weight": 0.0,
    "select_by": "mIoU",
}
#: The model options ``diffris train --model-option KEY=VALUE`` may set (:class:`RSRefSegConfig`
#: fields; the trained folder's config records them).
MODEL_OPTIONS: tuple[str, ...] = (
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "down_spatial_times",
    "norm",
    "dense_prompt",
    "mask_padding",
    "context_layers",
    "text_lora",
    "mask_threshold",
    "max_tokens",
)
#: ``--loss`` -> (bce_weight, dice_weight); BCE alone is RSRefSeg's, BCE + Dice RSRefSeg2's.
LOSSES: dict[str, tuple[float, float]] = {"bce": (5.0, 0.0), "bce+dice": (5.0, 5.0)}
