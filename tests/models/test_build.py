"""Presets, registry and the Stable Diffusion folder loader (exercised with the tiny weights)."""

from pathlib import Path

import pytest
import torch

from diffris.errors import InputError, WeightsNotFoundError
from diffris.models.diffris.backbone import load_sd_components, save_sd_components
from diffris.models.diffris.build import build_diffris, build_on_meta
from diffris.models.diffris.components import components_from_configs, sd15_component_configs
from diffris.models.diffris.model import DiffRIS
from diffris.models.diffris.tiny import build_tiny_components, tiny_head_configs
from diffris.models.loading import load_model
from diffris.models.registry import MODEL_REGISTRY
from diffris.paths import SD15_ENV


def _millions(module: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 2)


def test_sd15_configs_on_meta_have_the_published_sizes() -> None:
    with torch.device("meta"):
        parts = components_from_configs(sd15_component_configs())
    assert _millions(parts.unet) == 859.52
    encoder = sum(
        p.numel() for p in [*parts.vae.encoder.parameters(), *parts.vae.quant_conv.parameters()]
    )
    assert round(encoder / 1e6, 2) == 34.16
    assert _millions(parts.text_model) == 123.06
    assert parts.unet.conv_in.weight.is_meta


def test_sd15_model_on_meta_has_sd15_feature_shapes() -> None:
    model = build_on_meta("sd15")
    assert model.config.backbone.feature_channels == (1280, 1280, 640, 320)
    assert model.config.backbone.text_dim == 768
    assert model.config.backbone.fingerprint == ""
    # UNet without its output head + VAE encoder + CLIP text
    assert round(model.frozen_parameter_count() / 1e6, 2) == 1016.73


def test_unknown_preset_lists_the_valid_ones(tmp_path: Path) -> None:
    assert set(MODEL_REGISTRY) == {"tiny", "sd15", "rsrefseg-tiny", "rsrefseg-b", "rsrefseg-l"}
    with pytest.raises(InputError, match="unknown model 'sd21'; choose one of: tiny, sd15"):
        build_diffris("sd21")
    message = (
        "unknown model 'sd21'; choose one of: tiny, sd15, rsrefseg-tiny, rsrefseg-b, "
        "rsrefseg-l, or a trained-model folder"
    )
    with pytest.raises(InputError, match=message):
        load_model("sd21")
    with pytest.raises(InputError, match="unknown model option"):
        build_diffris("tiny", timestamp=3)


def test_load_model_gives_an_eval_model_with_overrides() -> None:
    model = load_model("tiny", device="cpu")
    assert isinstance(model, DiffRIS) and not model.training
    assert model.config.backbone.preset == "tiny"
    # a preset loaded by name is the same model every time, whatever the global RNG says
    torch.manual_seed(99)
    state = torch.random.get_rng_state()
    again = load_model("tiny")
    assert torch.equal(torch.random.get_rng_state(), state)
    for name, tensor in model.trainable_state_dict().items():
        assert torch.equal(again.trainable_state_dict()[name], tensor), name
    assert build_diffris("tiny", timestep=10, latent_scale=1.0).config.timestep == 10


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny weights written as a diffusers-layout Stable Diffusion folder."""
    return save_sd_components(build_tiny_components(), tmp_path_factory.mktemp("sd") / "tiny-sd")


def test_saved_tiny_backbone_loads_through_the_sd15_path(
    tiny_sd_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sub in ("unet", "vae", "text_encoder", "tokenizer"):
        assert (tiny_sd_folder / sub).is_dir()
    assert (tiny_sd_folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    torch.manual_seed(0)
    reference = build_diffris("tiny").eval()
    adapter, decoder = tiny_head_configs()
    from_folder = build_diffris(
        "sd15", pretrained=tiny_sd_folder, cp_adapter=adapter, pcmrd=decoder
    ).eval()
    assert from_folder.config.backbone.preset == "sd15"
    # same weights -> same backbone identity, whichever path built them
    assert from_folder.config.backbone.fingerprint == reference.config.backbone.fingerprint
    from_folder.load_trainable_state_dict(reference.trainable_state_dict())
    pixels = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        expected = reference(pixels, ["the roof"])
        assert torch.equal(from_folder(pixels, ["the roof"]), expected)
        # and through $DIFFRIS_SD15, the way a user points at real weights
        monkeypatch.setenv(SD15_ENV, str(tiny_sd_folder))
        via_env = build_diffris("sd15", cp_adapter=adapter, pcmrd=decoder).eval()
        via_env.load_trainable_state_dict(reference.trainable_state_dict())
        assert torch.equal(via_env(pixels, ["the roof"]), expected)


def test_architecture_comes_from_the_folder_configs(tiny_sd_folder: Path) -> None:
    parts = load_sd_components(tiny_sd_folder)
    assert list(parts.unet.config.block_out_channels) == [32, 64, 96, 128]
    assert parts.text_model.config.hidden_size == 64
    assert len(parts.tokenizer) == 49408
    assert parts.unet.dtype == torch.float32


def test_folder_missing_unet_is_one_clear_line(tmp_path: Path) -> None:
    folder = tmp_path / "sd"
    for sub in ("vae", "text_encoder", "tokenizer"):
        (folder / sub).mkdir(parents=True)
    with pytest.raises(WeightsNotFoundError) as caught:
        build_diffris("sd15", pretrained=folder)
    message = str(caught.value)
    assert "\n" not in message
    assert str(folder) in message and "missing unet/" in message and "--pretrained" in message


def test_no_sd15_anywhere_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIFFRIS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(SD15_ENV, raising=False)
    with pytest.raises(WeightsNotFoundError, match="not found.*home.*DIFFRIS_SD15") as caught:
        build_diffris("sd15")
    assert "\n" not in str(caught.value)


def test_pickled_weights_are_refused(tiny_sd_folder: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_folder, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(WeightsNotFoundError, match="never loads pickled"):
        load_sd_components(folder)


def test_fp16_variant_folder_loads_as_float32(tiny_sd_folder: Path, tmp_path: Path) -> None:
    """A folder holding only float16 UNet weights (``variant="fp16"``) loads, as float32."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_folder, folder)
    unet = folder / "unet" / "diffusion_pytorch_model.safetensors"
    half = {name: tensor.half() for name, tensor in load_file(unet).items()}
    save_file(half, unet.with_name("diffusion_pytorch_model.fp16.safetensors"))
    unet.unlink()
    parts = load_sd_components(folder)
    assert parts.unet.dtype == torch.float32
    weight = parts.unet.conv_in.weight
    assert torch.equal(weight, half["conv_in.weight"].float())
    # float16 rounding of the same weights keeps the backbone identity
    fp16 = build_diffris("sd15", pretrained=folder)
    assert fp16.config.backbone.fingerprint == build_diffris("tiny").config.backbone.fingerprint


def test_tiny_text_model_tells_sentences_apart(tiny_model: DiffRIS) -> None:
    # the demo model and the learnability check depend on it: with CLIP's default random init
    # every pooled sentence had cosine 0.95-0.99 with every other
    texts = ["the red roofs", "the blue vehicles", "the ponds", "the rivers"]
    with torch.no_grad():
        features = tiny_model.encode_text(texts)
    mask = features.mask.unsqueeze(-1)
    pooled = (features.hidden * mask).sum(dim=1) / mask.sum(dim=1)
    unit = torch.nn.functional.normalize(pooled, dim=-1)
    cosine = unit @ unit.T
    off_diagonal = cosine[~torch.eye(len(texts), dtype=torch.bool)]
    assert off_diagonal.max() < 0.9, cosine
