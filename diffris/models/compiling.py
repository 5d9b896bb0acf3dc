"""``torch.compile`` for a model's heavy parts, in place, without touching its hooks.

Compiling a whole model would trace through the hooks DiffRIS's backbone registers on every
call (to capture the UNet's decoder maps): new hooks each call would either recompile each call
or, with dynamo's default of not guarding on hooks, run stale ones. So only parts that carry no
such hook are compiled, each with :meth:`torch.nn.Module.compile` (in place: parameter names,
the trainable state dict and ``.to()`` are unchanged):

- DiffRIS: the VAE encoder, the UNet's down blocks and mid block, the resnets and attentions of
  its up blocks (not the blocks, whose upsamplers and last block carry the hooks), and PCMRD;
- RSRefSeg: SAM's image encoder and mask decoder, SigLIP's vision tower and the prompter.

Text encoding runs once per run and is left alone. Shapes are fixed by the tile predictor
(every micro-batch padded to the same size), so each part compiles once per precision.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from torch import nn

from diffris.errors import InputError
from diffris.models.interface import ReferringModel


def _diffris_parts(model: Any) -> Iterator[str]:
    unet = model.backbone.unet
    yield "backbone.vae.encoder"
    yield from (f"backbone.unet.down_blocks.{i}" for i in range(len(unet.down_blocks)))
    yield "backbone.unet.mid_block"
    for i, block in enumerate(unet.up_blocks):
        for kind in ("resnets", "attentions"):
            for j in range(len(getattr(block, kind, None) or ())):
                yield f"backbone.unet.up_blocks.{i}.{kind}.{j}"
    yield "decoder"


def _rsrefseg_parts(model: Any) -> Iterator[str]:
    yield from ("sam.vision_encoder", "siglip.vision_model", "sam.mask_decoder", "prompter")


#: Architecture -> the names of the sub-modules :func:`compile_parts` compiles.
PARTS = {"diffris": _diffris_parts, "rsrefseg": _rsrefseg_parts}


def compile_parts(model: ReferringModel, **options: Any) -> list[str]:
    """Compile ``model``'s heavy, hook-free sub-modules in place.

    Args:
        model: a DiffRIS or RSRefSeg model.
        **options: passed to :func:`torch.compile` (``mode``, ``backend``, ``dynamic``...).

    Returns:
        The names of the compiled sub-modules.

    Raises:
        InputError: an architecture this module does not know.
    """
    if model.architecture not in PARTS:
        raise InputError(
            f"no compile plan for architecture {model.architecture!r}; known: {', '.join(PARTS)}"
        )
    module = cast(nn.Module, model)
    names = list(PARTS[model.architecture](model))
    for name in names:
        module.get_submodule(name).compile(**options)
    return names
