"""What is loaded is what the model was trained on: every backbone tensor fingerprinted, parts
that do not fit refused at load, and the VAE's own latent scale used."""

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffris.errors import CheckpointMismatchError, DiffrisError
from diffris.models.checkpoint import load_trained, save_trained
from diffris.models.diffris.backbone import save_sd_components
from diffris.models.diffris.build import build_diffris
from diffris.models.diffris.tiny import build_tiny_components, tiny_head_configs
from diffris.paths import diffris_home

UNET_WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"
#: One attention projection of the UNet's coarsest decoder stage.
ATTENTION = "up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny weights as a diffusers-layout folder."""
    return save_sd_components(build_tiny_components(), tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="module")
def trained_on_folder(sd_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained (heads saved) on the ``sd15`` backbone read from ``sd_folder``."""
    adapter, decoder = tiny_head_configs()
    model = build_diffris("sd15", pretrained=sd_folder, cp_adapter=adapter, pcmrd=decoder, seed=1)
    return save_trained(model, tmp_path_factory.mktemp("runs") / "model")


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "sd-copy"))


def _edit_tensors(path: Path, edit: dict[str, float]) -> None:
    """Multiply the named tensors of a safetensors file by the given factors, in place."""
    tensors = load_file(path)
    for name, factor in edit.items():
        tensors[name] = tensors[name] * factor
    save_file(tensors, path, metadata={"format": "pt"})


def _edit_config(path: Path, **changes: object) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_one_changed_attention_weight_is_refused(
    sd_folder: Path, trained_on_folder: Path, tmp_path: Path
) -> None:
    folder = _copy(sd_folder, tmp_path)
    _edit_tensors(folder / UNET_WEIGHTS, {ATTENTION: 3.0})
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        load_trained(trained_on_folder, pretrained=folder)


def test_every_attention_weight_scaled_is_refused(
    sd_folder: Path, trained_on_folder: Path, tmp_path: Path
) -> None:
    folder = _copy(sd_folder, tmp_path)
    names = [name for name in load_file(folder / UNET_WEIGHTS) if ".attn" in name]
    assert len(names) > 20
    _edit_tensors(folder / UNET_WEIGHTS, dict.fromkeys(names, 3.0))
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        load_trained(trained_on_folder, pretrained=folder)
    # the unchanged folder still loads
    assert load_trained(trained_on_folder, pretrained=sd_folder) is not None


def test_a_changed_file_is_rehashed_even_with_its_size_and_mtime_kept(
    sd_folder: Path, trained_on_folder: Path, tmp_path: Path
) -> None:
    folder = _copy(sd_folder, tmp_path)
    load_trained(trained_on_folder, pretrained=folder)  # hashes it into the cache
    cache = diffris_home() / "fingerprints.json"
    assert cache.is_file() and json.loads(cache.read_text())
    weights = folder / UNET_WEIGHTS
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    tensors = load_file(weights)
    tensors[ATTENTION] = tensors[ATTENTION] * 3
    from safetensors.torch import save

    edited = save(tensors, metadata={"format": "pt"})
    assert len(edited) == len(data)
    with weights.open("r+b") as stream:  # in place: same inode, same size
        stream.write(edited)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        load_trained(trained_on_folder, pretrained=folder)


def test_a_garbage_fingerprint_cache_is_ignored(
    sd_folder: Path, trained_on_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "fingerprints.json").write_bytes(os.urandom(2000))
    monkeypatch.setenv("DIFFRIS_HOME", str(home))
    assert load_trained(trained_on_folder, pretrained=sd_folder) is not None
    assert json.loads((home / "fingerprints.json").read_text())  # rewritten, whole


def test_a_model_saved_by_an_older_diffris_is_checked_the_old_way_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = save_trained(build_diffris("tiny", seed=2), tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    backbone = config["model"]["backbone"]
    del backbone["fingerprint_scheme"]
    backbone["fingerprint"] = "da32076d3587a11b"  # what diffris before scheme 2 recorded
    (folder / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="diffris"):
        assert load_trained(folder) is not None
    assert "older diffris" in caplog.text
    backbone["fingerprint"] = "0123456789abcdef"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="0123456789abcdef"):
        load_trained(folder)
    backbone["fingerprint_scheme"] = 9
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="scheme 9.*upgrade diffris"):
        load_trained(folder)


def test_a_vae_whose_latents_the_unet_cannot_take_is_refused_at_load(
    sd_folder: Path, tmp_path: Path
) -> None:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    from diffris.models.diffris.tiny import tiny_component_configs

    folder = _copy(sd_folder, tmp_path)
    shutil.rmtree(folder / "vae")
    AutoencoderKL(**{**tiny_component_configs()["vae"], "latent_channels": 4}).save_pretrained(
        folder / "vae", safe_serialization=True
    )
    with pytest.raises(DiffrisError, match="latent_channels 4.*in_channels 16"):
        build_diffris("sd15", pretrained=folder)


def test_a_text_encoder_wider_than_the_unet_attends_is_refused_naming_both(
    sd_folder: Path, tmp_path: Path
) -> None:
    folder = _copy(sd_folder, tmp_path)
    _edit_config(folder / "text_encoder" / "config.json", hidden_size=96)
    with pytest.raises(DiffrisError, match="hidden_size 96.*cross_attention_dim 64"):
        build_diffris("sd15", pretrained=folder)


def test_a_tokenizer_larger_than_the_text_vocabulary_is_refused_at_load(
    sd_folder: Path, tmp_path: Path
) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    from diffris.models.diffris.tiny import tiny_component_configs

    folder = _copy(sd_folder, tmp_path)
    shutil.rmtree(folder / "text_encoder")
    small = CLIPTextConfig(**{**tiny_component_configs()["text"], "vocab_size": 1000})
    CLIPTextModel(small).save_pretrained(folder / "text_encoder", safe_serialization=True)
    with pytest.raises(DiffrisError, match="49408 tokens.*vocab_size 1000"):
        build_diffris("sd15", pretrained=folder)


def test_the_vae_scaling_factor_is_read_and_an_explicit_latent_scale_wins(
    sd_folder: Path, tmp_path: Path
) -> None:
    folder = _copy(sd_folder, tmp_path)
    _edit_config(folder / "vae" / "config.json", scaling_factor=0.13025)
    assert build_diffris("sd15", pretrained=folder).config.latent_scale == 0.13025
    assert build_diffris("sd15", pretrained=folder, latent_scale=0.5).config.latent_scale == 0.5
    assert build_diffris("sd15", pretrained=sd_folder).config.latent_scale == 0.18215


def test_a_trained_model_keeps_its_latent_scale_and_says_the_folder_differs(
    sd_folder: Path, trained_on_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy(sd_folder, tmp_path)
    _edit_config(folder / "vae" / "config.json", scaling_factor=0.13025)
    with caplog.at_level(logging.WARNING, logger="diffris"):
        model = load_trained(trained_on_folder, pretrained=folder)
    assert model.config.latent_scale == 0.18215
    assert "scaling_factor 0.13025" in caplog.text and "using 0.18215" in caplog.text


def test_weights_missing_a_tensor_are_refused_not_filled_with_random_values(
    sd_folder: Path, tmp_path: Path
) -> None:
    folder = _copy(sd_folder, tmp_path)
    tensors = load_file(folder / UNET_WEIGHTS)
    del tensors[ATTENTION]
    save_file(tensors, folder / UNET_WEIGHTS, metadata={"format": "pt"})
    with pytest.raises(DiffrisError, match=f"missing {ATTENTION}"):
        build_diffris("sd15", pretrained=folder)


def test_in_memory_weights_are_fingerprinted_in_full() -> None:
    reference = build_diffris("tiny").config.backbone.fingerprint
    from diffris.models.diffris.build import compose

    components = build_tiny_components()
    with torch.no_grad():
        components.unet.get_parameter(ATTENTION).mul_(3)
    changed = compose(components, preset="tiny").config.backbone.fingerprint
    assert changed != reference
