"""Devices and numeric precision, shared by inference and training."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from typing import TYPE_CHECKING

from diffris.errors import InputError

if TYPE_CHECKING:  # torch is imported where a device is used: flags parse without it
    import torch


class Precision(enum.Enum):
    """Compute precision: fp32 everywhere, or autocast to bf16 / fp16."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.value]


def resolve_device(name: str | None = None) -> torch.device:
    """``auto`` (or None) picks the first CUDA device, else MPS, else the CPU.

    Raises:
        InputError: the device does not exist here.
    """
    import torch

    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(
            f"--device {name!r} is not a device; use cpu, cuda, cuda:N or auto"
        ) from err
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise InputError(
                f"--device {name} is not available: this machine has {count} CUDA device(s); "
                "use --device cpu or auto"
            )
    return device


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Autocast to ``precision`` on ``device``; a no-op for fp32."""
    if precision is Precision.FP32:
        yield
        return
    import torch

    with torch.autocast(device_type=device.type, dtype=precision.dtype):
        yield
