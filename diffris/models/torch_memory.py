"""Tensors loaded from safetensors files, moved into memory PyTorch owns."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def into_torch_memory(module: nn.Module) -> None:
    """Copy every parameter and buffer of ``module`` into memory PyTorch allocates itself.

    ``from_pretrained`` leaves the tensors aliasing the memory-mapped safetensors file, at the
    file's 4- or 8-byte aligned offsets, where PyTorch's own tensors are 64-byte aligned. MKL's
    kernels for CPUs it runs without AVX2 (AMD processors, older Intel ones) round a product of
    misaligned weights differently: a tiny backbone loaded from its saved folder differed by
    2.4e-7 from the preset it was saved from. Owned memory makes both run the same kernels, and
    detaches the model from the file.
    """
    for param in module.parameters():
        param.data = param.data.clone()
    for name, buffer in list(module.named_buffers()):
        owner_name, _, leaf = name.rpartition(".")
        setattr(module.get_submodule(owner_name), leaf, buffer.clone())
