"""Hostile trained-model folders and Stable Diffusion folders: one clear line each, nothing run.

Every case breaks one thing of a good folder (copied fresh per case) and runs the real
``diffris segment`` on it; a pickle disguised as weights must never execute its payload.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from safetensors.torch import load_file, save_file

from diffris.models.checkpoint import save_trained
from diffris.models.diffris.backbone import save_sd_components
from diffris.models.diffris.build import build_diffris
from diffris.models.diffris.tiny import build_tiny_components
from tests.hostile.harness import assert_one_clear_line, assert_unchanged, run_cli, snapshot


class _Payload:
    """Unpickling this creates the file named by ``PWNED`` (it must never happen)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (os.system, (f"touch {self.target}",))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good scene, trained-model folder and Stable Diffusion folder, never modified."""
    root = tmp_path_factory.mktemp("pristine")
    scene = root / "scene.tif"
    with rasterio.open(
        scene, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(500000, 4000000, 1, 1),
    ) as out:  # fmt: skip
        out.write(np.full((3, 64, 64), 100, dtype=np.uint8))
    model = save_trained(build_diffris("tiny", seed=0), root / "model")
    sd = save_sd_components(build_tiny_components(), root / "sd")
    return {"scene": scene, "model": model, "sd": sd}


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _write_config(folder: Path, config: object) -> None:
    (folder / "config.json").write_text(json.dumps(config))


# -- trained-model folders -----------------------------------------------------------------------


def unknown_architecture(model: Path, tmp: Path) -> str:
    _write_config(model, {**_config(model), "architecture": "stable-cascade"})
    return "architecture 'stable-cascade'"


def truncated_weights(model: Path, tmp: Path) -> str:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:3000])
    return "model.safetensors"


def huge_header_length(model: Path, tmp: Path) -> str:
    # a 14-byte file claiming an 8 EiB JSON header: nothing may try to allocate it
    (model / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 63) + b"{}    ")
    return "model.safetensors"


def wrong_shape(model: Path, tmp: Path) -> str:
    tensors = load_file(model / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].flatten()[:1].clone()
    save_file(tensors, model / "model.safetensors")
    return "has shape"


def wrong_dtype(model: Path, tmp: Path) -> str:
    tensors = load_file(model / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].to(dtype=__import__("torch").int64)
    save_file(tensors, model / "model.safetensors")
    return "int64"


def extra_config_keys(model: Path, tmp: Path) -> str:
    config = _config(model)
    config["model"]["lora_rank"] = 8
    _write_config(model, config)
    return "lora_rank"


def config_is_a_list(model: Path, tmp: Path) -> str:
    _write_config(model, [1, 2, 3])
    return "config.json"


def deeply_nested_config(model: Path, tmp: Path) -> str:
    (model / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    return "config.json"


def pickle_as_weights(model: Path, tmp: Path) -> str:
    (model / "model.safetensors").write_bytes(pickle.dumps(_Payload(str(tmp / "PWNED"))))
    return "model.safetensors"


def fingerprint_of_another_backbone(model: Path, tmp: Path) -> str:
    config = _config(model)
    config["model"]["backbone"]["fingerprint"] = "feedfacefeedface"
    _write_config(model, config)
    return "feedfacefeedface"


MODEL_CASES: list[Callable[[Path, Path], str]] = [
    unknown_architecture,
    truncated_weights,
    huge_header_length,
    wrong_shape,
    wrong_dtype,
    extra_config_keys,
    config_is_a_list,
    deeply_nested_config,
    pickle_as_weights,
    fingerprint_of_another_backbone,
]


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.__name__)
def test_a_hostile_trained_model_folder_is_one_clear_line(
    pristine: dict[str, Path], tmp_path: Path, case: Callable[[Path, Path], str]
) -> None:
    model = Path(shutil.copytree(pristine["model"], tmp_path / "model"))
    expected = case(model, tmp_path)
    before = snapshot(tmp_path)
    out = tmp_path / "masks.tif"
    result = run_cli(["segment", pristine["scene"], "-t", "roofs", "-o", out, "--model", model])
    assert_one_clear_line(result, expected)
    assert_unchanged(before, tmp_path)
    assert not out.exists() and not (tmp_path / "PWNED").exists()


def test_the_pickle_payload_is_live(tmp_path: Path) -> None:
    """The payload used above does create its file when unpickled: its absence there is proof."""
    pickle.loads(pickle.dumps(_Payload(str(tmp_path / "PWNED"))))  # noqa: S301
    assert (tmp_path / "PWNED").exists()


# -- Stable Diffusion folders (--pretrained) -----------------------------------------------------


def _edit_sd_config(sd: Path, sub: str, **changes: object) -> None:
    path = sd / sub / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def garbage_unet_config(sd: Path, tmp: Path) -> str:
    (sd / "unet" / "config.json").write_bytes(os.urandom(300))
    return "unet/config.json is not valid JSON"


def unet_in_channels_zero(sd: Path, tmp: Path) -> str:
    _edit_sd_config(sd, "unet", in_channels=0)
    return "in_channels 0"


def terabyte_unet(sd: Path, tmp: Path) -> str:
    _edit_sd_config(sd, "unet", block_out_channels=[10_000_000] * 4)
    return "block_out_channels 10000000"


def vae_for_another_unet(sd: Path, tmp: Path) -> str:
    _edit_sd_config(sd, "vae", latent_channels=4)
    return "latent_channels 4"


def scaling_factor_is_text(sd: Path, tmp: Path) -> str:
    _edit_sd_config(sd, "vae", scaling_factor="0.18215")
    return "scaling_factor"


def pickle_as_unet_weights(sd: Path, tmp: Path) -> str:
    weights = sd / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(pickle.dumps(_Payload(str(tmp / "PWNED"))))
    return "unet/"


def symlink_loop(sd: Path, tmp: Path) -> str:
    shutil.rmtree(sd)
    os.symlink(tmp / "other", sd)
    os.symlink(sd, tmp / "other")
    return str(sd)


SD_CASES: list[Callable[[Path, Path], str]] = [
    garbage_unet_config,
    unet_in_channels_zero,
    terabyte_unet,
    vae_for_another_unet,
    scaling_factor_is_text,
    pickle_as_unet_weights,
    symlink_loop,
]


@pytest.mark.parametrize("case", SD_CASES, ids=lambda case: case.__name__)
def test_a_hostile_pretrained_folder_is_one_clear_line(
    pristine: dict[str, Path], tmp_path: Path, case: Callable[[Path, Path], str]
) -> None:
    sd = Path(shutil.copytree(pristine["sd"], tmp_path / "sd"))
    expected = case(sd, tmp_path)
    before = snapshot(tmp_path)
    out = tmp_path / "masks.tif"
    args = ["segment", pristine["scene"], "-t", "roofs", "-o", out, "--model", "sd15"]
    result = run_cli([*args, "--pretrained", sd])
    assert_one_clear_line(result, expected)
    assert_unchanged(before, tmp_path)
    assert not out.exists() and not (tmp_path / "PWNED").exists()
