"""The fastest exact way to run a model on a device: one place that inference goes through.

:func:`prepare_for_inference` puts a model on its device, in eval mode and in the memory layout
that runs fastest there; :func:`to_inference_layout` gives input pixels the same layout. The
tile predictor and ``diffris evaluate`` call them; a GPU path adds its own choices here.

On a CPU the layout is ``channels_last`` (NHWC): oneDNN's convolutions read it directly, where a
contiguous (NCHW) tensor is reordered to a blocked layout and back around every convolution. A
512² tile of ``tiny`` spends half its time in the VAE encoder's narrow full-resolution
convolutions, where that reorder costs most: channels_last ran it 1.3x faster and the whole tile
1.2x (``python benchmarks/model_forward.py`` measures each part in both layouts). Probabilities equal the contiguous path's to ~2e-7 (the same kernels'
float sums in another order), far inside the 1e-5 that the tests hold it to; nothing else
(precision, fused or compiled graphs) is changed, so the default stays exact.

``--precision bf16`` stays an option, for CPUs with bf16 instructions (AVX512-BF16, AMX; not
measured here): without them every operand is converted and a tile ran 2.5-2.9x slower than
fp32 (both tiny models), which :func:`warn_if_slower` says when a run starts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

import torch

from diffris.devices import Precision

if TYPE_CHECKING:
    from torch import Tensor, nn

log = logging.getLogger(__name__)

Module = TypeVar("Module", bound="nn.Module")


def inference_memory_format(device: torch.device) -> torch.memory_format:
    """The layout of 4-D weights and activations that runs fastest on ``device``.

    ``channels_last`` on a CPU (see the module docstring) and on CUDA, the layout cuDNN's
    tensor-core convolutions run natively (eager GroupNorm still works in NCHW there and
    converts: ``benchmarks/gpu.py`` measures both layouts); elsewhere ``contiguous_format``.
    """
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def prepare_for_inference(model: Module, device: torch.device) -> Module:
    """``model`` on ``device``, in eval mode, its 4-D weights in :func:`inference_memory_format`.

    Converts in place (like ``nn.Module.to``) and returns the same object. Only the layout of
    the weights changes: their values, the state dict's contents and a trained folder written
    from the model stay the same.
    """
    model = model.to(device).eval()
    layout = inference_memory_format(device)
    if layout is not torch.contiguous_format:
        model = model.to(memory_format=layout)
    return model


def to_inference_layout(pixels: Tensor) -> Tensor:
    """(B, C, H, W) ``pixels`` in the layout :func:`prepare_for_inference` gave the weights of
    a model on their device (a no-op when they already are)."""
    return pixels.contiguous(memory_format=inference_memory_format(pixels.device))


def native_bf16(device: torch.device) -> bool | None:
    """Whether ``device`` computes bf16 natively: always off a CPU; on a CPU, AVX512-BF16 or
    AMX (None where this PyTorch cannot tell)."""
    if device.type != "cpu":
        return True
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return None
    found = capabilities()
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


def warn_if_slower(device: torch.device, precision: Precision) -> None:
    """Log a warning when ``precision`` runs slower than fp32 here (bf16 on a CPU without
    bf16 instructions); the run goes on as asked."""
    if precision is Precision.BF16 and native_bf16(device) is False:
        log.warning(
            "--precision bf16 on a CPU without bf16 instructions (AVX512-BF16, AMX) runs about "
            "2.5x slower than fp32, and is not exact; use --precision fp32 here"
        )
