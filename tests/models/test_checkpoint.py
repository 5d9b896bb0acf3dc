"""Trained-model folders: round trip, atomic overwrite rules, and mismatch reporting."""

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffris.errors import (
    CheckpointMismatchError,
    InputError,
    OutputExistsError,
    WeightsNotFoundError,
)
from diffris.models.checkpoint import load_trained, read_config, read_metadata, save_trained
from diffris.models.diffris.build import build_diffris
from diffris.models.diffris.model import DiffRIS
from diffris.models.diffris.pcmrd import PCMRDConfig
from diffris.models.loading import load_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[DiffRIS, Path]:
    """A tiny model with non-default options and perturbed heads ("trained"), saved once."""
    torch.manual_seed(5)
    model = build_diffris("tiny", timestep=3, pcmrd=PCMRDConfig(dim=64, heads=4)).eval()
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.add_(torch.randn_like(param) * 0.01)
    folder = tmp_path_factory.mktemp("runs") / "model"
    metadata = {"dataset": "rrsisd", "metrics": {"oIoU": 12.5}}
    save_trained(model, folder, metadata=metadata)
    return model, folder


def test_round_trip_gives_bit_identical_logits(trained: tuple[DiffRIS, Path]) -> None:
    model, folder = trained
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "metadata.json", "model.safetensors"
    ]  # fmt: skip
    loaded = load_trained(folder)
    assert loaded.config == model.config and not loaded.training
    pixels = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(pixels, ["the ship"]), model(pixels, ["the ship"]))
    assert torch.equal(load_model(folder)(pixels, ["the ship"]), model(pixels, ["the ship"]))


def test_folder_contents(trained: tuple[DiffRIS, Path]) -> None:
    model, folder = trained
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "diffris" and config["preset"] == "tiny"
    assert config["model"]["timestep"] == 3 and config["model"]["pcmrd"]["dim"] == 64
    assert config["model"]["backbone"]["fingerprint"] == model.config.backbone.fingerprint
    assert read_config(folder) == model.config
    metadata = read_metadata(folder)
    assert metadata["dataset"] == "rrsisd" and metadata["metrics"] == {"oIoU": 12.5}
    assert {"diffris", "torch", "diffusers"} <= set(metadata["versions"])
    assert metadata["parameters"]["trainable"] == model.trainable_parameter_count()
    weights = load_file(folder / "model.safetensors")
    assert set(weights) == set(model.trainable_state_dict())  # trainable weights only


def _copy_with(folder: Path, tmp_path: Path, edit: dict[str, torch.Tensor | None]) -> Path:
    import shutil

    target = tmp_path / "edited"
    shutil.copytree(folder, target)
    tensors = load_file(target / "model.safetensors")
    for name, tensor in edit.items():
        if tensor is None:
            del tensors[name]
        else:
            tensors[name] = tensor
    save_file(tensors, target / "model.safetensors")
    return target


def test_missing_and_misshaped_tensors_are_all_named(
    trained: tuple[DiffRIS, Path], tmp_path: Path
) -> None:
    model, folder = trained
    names = sorted(model.trainable_state_dict())
    missing, misshaped = names[0], names[-1]
    edited = _copy_with(
        folder,
        tmp_path,
        {missing: None, misshaped: torch.zeros(3, 5), "decoder.extra.weight": torch.zeros(2)},
    )
    with pytest.raises(CheckpointMismatchError) as caught:
        load_trained(edited)
    message = str(caught.value)
    assert "\n" not in message and "3 problem(s)" in message
    assert f"missing {missing}" in message
    assert "unexpected decoder.extra.weight" in message
    assert f"{misshaped} has shape (3, 5) but the model expects" in message


def test_other_backbone_fingerprint_is_refused(
    trained: tuple[DiffRIS, Path], tmp_path: Path
) -> None:
    import shutil

    _, folder = trained
    target = tmp_path / "other"
    shutil.copytree(folder, target)
    config = json.loads((target / "config.json").read_text())
    config["model"]["backbone"]["fingerprint"] = "0123456789abcdef"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="fingerprint 0123456789abcdef"):
        load_trained(target)
    assert load_trained(target, check_backbone=False).config.backbone.preset == "tiny"


def test_bad_configs_are_refused(trained: tuple[DiffRIS, Path], tmp_path: Path) -> None:
    import shutil

    _, folder = trained
    target = tmp_path / "bad"
    shutil.copytree(folder, target)
    config = json.loads((folder / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "architecture": "maskformer"}))
    with pytest.raises(CheckpointMismatchError, match="architecture 'maskformer'"):
        load_trained(target)
    config["model"]["pcmrd"]["dimension"] = 3
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="unknown PCMRDConfig option.*dimension"):
        load_trained(target)
    (target / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="missing model.safetensors"):
        load_trained(target)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_trained(tmp_path / "nowhere")


def test_existing_folders_are_protected(trained: tuple[DiffRIS, Path], tmp_path: Path) -> None:
    model, _ = trained
    folder = save_trained(model, tmp_path / "model")
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        save_trained(model, folder)
    save_trained(model, folder, overwrite=True, metadata={"epoch": 2})
    assert read_metadata(folder)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary leftovers
    other = tmp_path / "photos"
    other.mkdir()
    with pytest.raises(OutputExistsError, match="not a trained-model folder"):
        save_trained(model, other, overwrite=True)
    with pytest.raises(InputError, match="created"):
        save_trained(model, tmp_path / "x", metadata={"created": "yesterday"})
    with pytest.raises(InputError, match="JSON"):
        save_trained(model, tmp_path / "y", metadata={"tensor": torch.zeros(1)})
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_weights_are_as_readable_as_the_config(
    trained: tuple[DiffRIS, Path], tmp_path: Path, set_umask: Callable[[int], int], umask: int
) -> None:
    # safetensors writes 0600 whatever the umask; a colleague or the serving account
    # must be able to read a model that its config.json says is there
    set_umask(umask)
    folder = save_trained(trained[0], tmp_path / "shared")
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)
