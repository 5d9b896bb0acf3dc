import pytest
import torch

from diffris.devices import Precision, autocast, resolve_device
from diffris.errors import InputError


def test_auto_device_is_cpu_without_accelerators():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_unavailable_or_malformed_device_is_one_clear_error():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(InputError, match=f"has {count} CUDA device"):
        resolve_device(f"cuda:{count}")
    with pytest.raises(InputError, match="is not a device"):
        resolve_device("gpu-please")


def test_bf16_autocast_changes_matmul_dtype_and_fp32_does_not():
    a = torch.randn(4, 4)
    with autocast(torch.device("cpu"), Precision.BF16):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), Precision.FP32):
        assert (a @ a).dtype == torch.float32
