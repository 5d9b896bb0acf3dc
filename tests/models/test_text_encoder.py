"""The bundled CLIP tokenizer and the frozen text encoder."""

import pytest
import torch
from transformers import CLIPTokenizer

from diffris.errors import InputError
from diffris.models.diffris.model import DiffRIS
from diffris.models.diffris.text_encoder import bundled_tokenizer_dir, load_bundled_tokenizer


def test_bundled_tokenizer_is_real_clip_bpe() -> None:
    tokenizer = load_bundled_tokenizer()
    assert isinstance(tokenizer, CLIPTokenizer)
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    # lower-casing, punctuation split off, numbers digit by digit, as CLIP does
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("The Building, 12m")["input_ids"])
    assert tokens == [
        "<|startoftext|>", "the</w>", "building</w>", ",</w>", "1</w>", "2</w>", "m</w>",
        "<|endoftext|>",
    ]  # fmt: skip
    assert (bundled_tokenizer_dir() / "vocab.json").is_file()
    assert (bundled_tokenizer_dir() / "merges.txt").is_file()


def test_tokenize_pads_to_77_and_masks_padding(tiny_model: DiffRIS) -> None:
    tokens = tiny_model.tokenize(["a photo of a cat", ""])
    assert tokens.input_ids.shape == (2, 77) and tokens.input_ids.dtype == torch.int64
    assert tokens.input_ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (tokens.input_ids[0, 7:] == 49407).all()  # padded with <|endoftext|>
    assert tokens.attention_mask.sum(dim=1).tolist() == [7, 2]
    assert tokens.truncated == [False, False]


def test_long_prompt_is_truncated_and_reported(tiny_model: DiffRIS) -> None:
    long = " ".join(["building"] * 80)  # 80 words + start + end = 82 tokens
    just_fits = " ".join(["building"] * 75)  # 77 tokens exactly
    tokens = tiny_model.tokenize([long, just_fits, "a cat"])
    assert tokens.truncated == [True, False, False]
    assert tokens.input_ids.shape == (3, 77)
    assert tokens.input_ids[0, -1].item() == 49407  # still ends with <|endoftext|>
    assert tokens.attention_mask[0].all()
    assert tiny_model.encode_text(tokens).truncated == [True, False, False]


@pytest.mark.parametrize("texts", ["a single string", [1, 2], []])
def test_tokenize_rejects_non_lists_of_strings(tiny_model: DiffRIS, texts: object) -> None:
    with pytest.raises(InputError, match="texts"):
        tiny_model.tokenize(texts)  # type: ignore[arg-type]


def test_text_features_shapes_and_gradient_path(tiny_model: DiffRIS) -> None:
    text = tiny_model.encode_text(["the red roof", "a road"])
    dim = tiny_model.config.backbone.text_dim
    assert text.hidden.shape == text.refined.shape == (2, 77, dim)
    assert text.mask.dtype == torch.bool and text.mask.sum(dim=1).tolist() == [5, 4]
    assert not text.hidden.requires_grad  # CLIP is frozen and runs without autograd
    assert text.refined.requires_grad  # the CP-adapter is trainable


def test_text_features_pairing_helpers(tiny_model: DiffRIS) -> None:
    with torch.no_grad():
        text = tiny_model.encode_text(["a", "b c"])
    assert text.repeat_interleave(2).mask.sum(dim=1).tolist() == [3, 3, 4, 4]
    assert text.repeat(2).mask.sum(dim=1).tolist() == [3, 4, 3, 4]
    picked = text.index_select(torch.tensor([1, 1, 0]))
    assert len(picked) == 3
    assert torch.equal(picked.refined[0], text.refined[1])
    assert torch.equal(picked.hidden[2], text.hidden[0])
