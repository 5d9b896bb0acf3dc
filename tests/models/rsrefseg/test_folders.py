"""RSRefSeg's SigLIP and SAM folders: found in order, loaded bit-identically, pickles refused.

Tiny random models of the real classes (``SiglipModel``, ``SamModel``) are saved in the Hugging
Face layout and read back through the real loading code; the lookups run against folders
holding only ``config.json`` and file names, as the lookup reads nothing else.
"""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from diffris.errors import InputError, WeightsNotFoundError
from diffris.models.rsrefseg.components import RSRefSegComponents
from diffris.models.rsrefseg.folders import load_components, resolve_folders, save_components
from diffris.models.rsrefseg.lookup import inspect_sam_folder, inspect_siglip_folder

WIDTH = 32
WORDS = ["<pad>", "<unk>", "</s>", "the", "red", "roof", "road", "river", "left", "of"]


def tiny_tokenizer():  # type: ignore[no-untyped-def]
    """A fast word-level tokenizer (the model's own tiny asset is a SigLIP-style one)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model = models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>")
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="</s>",
        model_max_length=16,
    )


def tiny_components() -> RSRefSegComponents:
    """SigLIP (56² images, 4×4 patches of 14) and SAM (64² images) of width 32, random."""
    from transformers import SamConfig, SamModel, SiglipConfig, SiglipModel

    layers = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    siglip_config = SiglipConfig(
        text_config={
            "hidden_size": WIDTH,
            **layers,
            "vocab_size": 16,
            "max_position_embeddings": 16,
            "projection_size": WIDTH,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 2,
        },
        vision_config={"hidden_size": WIDTH, **layers, "image_size": 56, "patch_size": 14},
    )
    sam_config = SamConfig(
        vision_config={
            "hidden_size": WIDTH,
            **layers,
            "output_channels": WIDTH,
            "image_size": 64,
            "patch_size": 16,
            "window_size": 2,
            "global_attn_indexes": [1],
            "mlp_dim": 64,
            "num_pos_feats": WIDTH // 2,
        },
        prompt_encoder_config={"hidden_size": WIDTH, "image_size": 64, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": WIDTH,
            "mlp_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": WIDTH,
        },
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        siglip, sam = SiglipModel(siglip_config).eval(), SamModel(sam_config).eval()
    return RSRefSegComponents(siglip=siglip, tokenizer=tiny_tokenizer(), sam=sam)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[RSRefSegComponents, Path, Path]:
    """The tiny parts, and the two folders save_components wrote them to."""
    parts = tiny_components()
    root = tmp_path_factory.mktemp("rsrefseg")
    siglip, sam = save_components(parts, root / "siglip", root / "sam")
    return parts, siglip, sam


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process where ``path`` is memory-mapped (Linux)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            start, end = line.split()[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads Linux's /proc/self/maps")
def test_saved_folders_load_back_bit_identical_frozen_and_in_owned_memory(saved, capfd):
    parts, siglip_dir, sam_dir = saved
    assert sorted(p.name for p in sam_dir.iterdir()) == ["config.json", "model.safetensors"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in siglip_dir.iterdir()
    }
    # transformers logs to its own logger (not propagated) and draws bars on stderr
    records, hub = _Records(), logging.getLogger("transformers")
    hub.addHandler(records)
    capfd.readouterr()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = load_components(siglip_dir, sam_dir)
    finally:
        hub.removeHandler(records)
    assert [str(w.message) for w in caught] == [] and records.messages == []
    assert capfd.readouterr() == ("", "")  # no "Loading weights" bars
    assert (loaded.siglip_folder, loaded.sam_folder) == (siglip_dir, sam_dir)

    for original, model in ((parts.siglip, loaded.siglip), (parts.sam, loaded.sam)):
        state, back = original.state_dict(), model.state_dict()
        assert state.keys() == back.keys()
        for name, tensor in state.items():
            assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    mapped = _mapped_ranges(siglip_dir / "model.safetensors")
    mapped += _mapped_ranges(sam_dir / "model.safetensors")
    for model in (loaded.siglip, loaded.sam):
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            pointer = tensor.data_ptr()
            assert not any(lo <= pointer < hi for lo, hi in mapped), f"{name} is file-mapped"

    ids = loaded.tokenizer(["the red roof", "road left of the river"], padding="max_length")
    assert (
        ids["input_ids"]
        == parts.tokenizer(["the red roof", "road left of the river"], padding="max_length")[
            "input_ids"
        ]
    )
    tokens = torch.tensor(ids["input_ids"])
    pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    sam_pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        text_a = parts.siglip.text_model(input_ids=tokens)
        text_b = loaded.siglip.text_model(input_ids=tokens)
        assert torch.equal(text_a.last_hidden_state, text_b.last_hidden_state)
        assert torch.equal(text_a.pooler_output, text_b.pooler_output)
        vision_a = parts.siglip.vision_model(pixel_values=pixels).last_hidden_state
        vision_b = loaded.siglip.vision_model(pixel_values=pixels).last_hidden_state
        assert vision_b.shape == (2, 16, WIDTH) and torch.equal(vision_a, vision_b)
        embed_a = parts.sam.vision_encoder(pixel_values=sam_pixels).last_hidden_state
        embed_b = loaded.sam.vision_encoder(pixel_values=sam_pixels).last_hidden_state
        assert embed_b.shape == (2, WIDTH, 4, 4) and torch.equal(embed_a, embed_b)


def _config_folder(path: Path, config: dict, weights: str = "model.safetensors") -> Path:
    """A folder with ``config.json`` and an (unread) weight file of that name."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / weights).write_bytes(b"weights")
    return path


SIGLIP_CONFIG = {
    "model_type": "siglip",
    "text_config": {"hidden_size": 1152},
    "vision_config": {"hidden_size": 1152},
}


def sam_config(hidden_size: int, layers: int) -> dict:
    return {
        "model_type": "sam",
        "vision_config": {"hidden_size": hidden_size, "num_hidden_layers": layers},
    }


def siglip_folder(path: Path) -> Path:
    folder = _config_folder(path, SIGLIP_CONFIG)
    (folder / "spiece.model").write_bytes(b"sentencepiece")
    return folder


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty diffris home, and neither variable set."""
    monkeypatch.setenv("DIFFRIS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DIFFRIS_SIGLIP", raising=False)
    monkeypatch.delenv("DIFFRIS_SAM", raising=False)
    return tmp_path / "home"


def test_resolve_takes_the_mapping_then_the_variables_then_the_cache(tmp_path, home, monkeypatch):
    cached_siglip = siglip_folder(home / "siglip-so400m-patch14-384")
    cached_b = _config_folder(home / "sam-vit-base", sam_config(768, 12))
    cached_l = _config_folder(home / "sam-vit-large", sam_config(1024, 24))
    assert resolve_folders(None, "rsrefseg-b") == (cached_siglip, cached_b)
    assert resolve_folders({}, "rsrefseg-l") == (cached_siglip, cached_l)

    env_siglip = siglip_folder(tmp_path / "env-siglip")
    env_l = _config_folder(tmp_path / "env-sam", sam_config(1024, 24))
    monkeypatch.setenv("DIFFRIS_SIGLIP", str(env_siglip))
    monkeypatch.setenv("DIFFRIS_SAM", str(env_l))
    assert resolve_folders(None, "rsrefseg-l") == (env_siglip, env_l)

    given_siglip = siglip_folder(tmp_path / "given-siglip")
    given_l = _config_folder(tmp_path / "given-sam", sam_config(1024, 24))
    assert resolve_folders({"sam": given_l}, "rsrefseg-l") == (env_siglip, given_l)
    both = {"siglip": str(given_siglip), "sam": str(given_l)}
    assert resolve_folders(both, "rsrefseg-l") == (given_siglip, given_l)


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_nothing_found_names_what_was_searched_and_every_fix(home):
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_folders(None, "rsrefseg-b")
    message = _one_line(err)
    assert message.startswith("SigLIP so400m-patch14-384 weights for rsrefseg-b not found")
    assert f"{home / 'siglip-so400m-patch14-384'} (no such folder)" in message
    for fix in ("--pretrained siglip=DIR", "DIFFRIS_SIGLIP", "'diffris weights download siglip'"):
        assert fix in message

    siglip_folder(home / "siglip-so400m-patch14-384")
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_folders(None, "rsrefseg-l")
    message = _one_line(err)
    assert message.startswith("SAM ViT-L weights for rsrefseg-l not found")
    assert str(home / "sam-vit-large") in message and "DIFFRIS_SAM" in message
    assert "'diffris weights download sam-l'" in message and "facebook/sam-vit-large" in message


@pytest.mark.parametrize("given", ["mapping", "variable"])
@pytest.mark.parametrize(
    ("preset", "config", "held", "needed"),
    [("rsrefseg-b", sam_config(1024, 24), "ViT-L", "ViT-B"), ("rsrefseg-l", {}, "ViT-B", "ViT-L")],
)
def test_a_sam_folder_of_the_wrong_size_is_one_line(
    tmp_path, home, monkeypatch, given, preset, config, held, needed
):
    siglip_folder(home / "siglip-so400m-patch14-384")
    # a usable cache copy of the right size: a wrong named folder must not fall back to it
    right = sam_config(768, 12) if needed == "ViT-B" else sam_config(1024, 24)
    _config_folder(home / ("sam-vit-base" if needed == "ViT-B" else "sam-vit-large"), right)
    sam = _config_folder(tmp_path / "sam", {"model_type": "sam", **config})
    pretrained = {"sam": sam} if given == "mapping" else None
    if given == "variable":
        monkeypatch.setenv("DIFFRIS_SAM", str(sam))
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_folders(pretrained, preset)
    message = _one_line(err)
    source = "--pretrained sam=DIR" if given == "mapping" else "$DIFFRIS_SAM"
    assert f"SAM {needed} folder {sam} ({source}) cannot be used: " in message
    assert f"it holds SAM {held}, not the {needed} needed here" in message


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"model_type": "clip"}, "config.json describes a 'clip' model, not SigLIP"),
        (
            {"model_type": "siglip", "text_config": {"hidden_size": 768}},
            "its text width 768 differs from its vision width 768",
        ),
    ],
    ids=["not-siglip", "widths"],
)
def test_a_folder_that_is_not_a_siglip_model_is_one_line(tmp_path, home, config, reason):
    if "text_config" in config:
        config = {**config, "vision_config": {"hidden_size": 1152}}
        reason = "its text width 768 differs from its vision width 1152"
    folder = _config_folder(tmp_path / "x", config)
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_folders({"siglip": folder}, "rsrefseg-b")
    message = _one_line(err)
    assert f"folder {folder} (--pretrained siglip=DIR) cannot be used: {reason}" in message


def test_a_folder_that_is_not_a_sam_model_is_one_line(tmp_path, home):
    siglip = siglip_folder(tmp_path / "siglip")
    sam = _config_folder(tmp_path / "sam2", {"model_type": "sam2_video"})
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_folders({"siglip": siglip, "sam": sam}, "rsrefseg-b")
    assert "config.json describes a 'sam2_video' model, not SAM" in _one_line(err)
    with pytest.raises(WeightsNotFoundError, match="no config.json"):
        resolve_folders({"siglip": siglip, "sam": tmp_path}, "rsrefseg-b")


def test_unknown_preset_or_part_is_an_input_error(home):
    with pytest.raises(InputError, match="choose one of: rsrefseg-b, rsrefseg-l"):
        resolve_folders(None, "rsrefseg-h")
    with pytest.raises(InputError, match="unknown pretrained part.*: clip; valid: siglip, sam"):
        resolve_folders({"clip": "x"}, "rsrefseg-b")


class _Marker:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("part", ["siglip", "sam"])
def test_pickled_weights_are_refused_without_being_unpickled(tmp_path, saved, home, part):
    _, siglip_dir, sam_dir = saved
    # the trap works: unpickling a twin creates its marker
    pickle.loads(pickle.dumps(_Marker(tmp_path / "twin")))
    assert (tmp_path / "twin").exists()

    marker = tmp_path / "unpickled"
    folder = tmp_path / part
    source = siglip_dir if part == "siglip" else sam_dir
    folder.mkdir()
    for item in source.iterdir():
        if item.suffix != ".safetensors":
            (folder / item.name).write_bytes(item.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(marker)))
    if part == "sam":
        (folder / "sam_vit_b_01ec64.pth").write_bytes(pickle.dumps(_Marker(marker)))
    names = "pytorch_model.bin" if part == "siglip" else "pytorch_model.bin, sam_vit_b_01ec64.pth"
    folders = (folder, sam_dir) if part == "siglip" else (siglip_dir, folder)

    with pytest.raises(WeightsNotFoundError) as err:
        load_components(*folders)
    message = _one_line(err)
    assert f"{folder} cannot be used: only pickled weights ({names}), no model.safetensors" in (
        message
    )
    assert "never unpickles" in message and "save_pretrained(safe_serialization=True)" in message
    lookup = (inspect_siglip_folder if part == "siglip" else inspect_sam_folder)(folder)
    assert not lookup.found
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_folders({"siglip": siglip_dir, part: folder}, "rsrefseg-b")
    message = _one_line(err)
    assert f"only pickled weights ({names})" in message
    assert f"'diffris weights download {'siglip' if part == 'siglip' else 'sam-b'}'" in message
    assert not marker.exists()


def test_a_safetensors_index_naming_pickled_shards_is_refused(tmp_path):
    folder = siglip_folder(tmp_path / "s")
    (folder / "model.safetensors").unlink()
    index = {"weight_map": {"a": "pytorch_model-00001-of-00002.bin"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    lookup = inspect_siglip_folder(folder)
    assert not lookup.found and "non-safetensors shards" in lookup.reason()


def test_siglips_own_sentencepiece_tokenizer_is_saved_and_read_back(tmp_path, saved):
    import io

    import sentencepiece
    from transformers import SiglipTokenizer

    corpus = ["red road", "a red dot", "road to a door"] * 20  # few letters: few pieces
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=14,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    (tmp_path / "spiece.model").write_bytes(model.getvalue())
    parts, _, sam_dir = saved
    tokenizer = SiglipTokenizer(str(tmp_path / "spiece.model"), model_max_length=16)
    own = RSRefSegComponents(siglip=parts.siglip, tokenizer=tokenizer, sam=parts.sam)
    siglip_dir, _ = save_components(own, tmp_path / "siglip", tmp_path / "sam")
    assert (siglip_dir / "spiece.model").is_file() and inspect_siglip_folder(siglip_dir).found
    loaded = load_components(siglip_dir, sam_dir)
    assert isinstance(loaded.tokenizer, SiglipTokenizer)
    text = "a red door to a road"
    assert loaded.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]


def _copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for item in source.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


def test_weights_that_do_not_fit_their_config_are_one_line(tmp_path, saved):
    _, siglip_dir, sam_dir = saved
    wider = _copy(sam_dir, tmp_path / "wider")
    config = json.loads((wider / "config.json").read_text())
    config["mask_decoder_config"]["iou_head_hidden_dim"] = 2 * WIDTH
    (wider / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsNotFoundError) as err:
        load_components(siglip_dir, wider)
    message = _one_line(err)
    assert f"the weights in {wider} do not cover the SAM model" in message
    assert "of another shape" in message

    broken = _copy(sam_dir, tmp_path / "broken")
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsNotFoundError) as err:
        load_components(siglip_dir, broken)
    assert _one_line(err).startswith(f"could not load SAM from {broken}: ")
