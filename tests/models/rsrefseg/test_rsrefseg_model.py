"""RSRefSeg's stages on the tiny preset: shapes, pairing, input size, features that keep the
image and the words."""

import time

import pytest
import torch
import torch.nn.functional as F

from diffris.errors import InputError
from diffris.models.interface import ReferringModel, select_rows
from diffris.models.rsrefseg.build import build_rsrefseg
from diffris.models.rsrefseg.config import RSRefSegConfig
from diffris.models.rsrefseg.model import RSRefSeg


def _sparse_prompts(model: RSRefSeg, pixels: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """The sparse prompt tokens SAM's mask decoder receives in a forward pass."""
    seen: list[torch.Tensor] = []
    hook = model.sam.mask_decoder.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["sparse_prompt_embeddings"]), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model(pixels, texts)
    finally:
        hook.remove()
    return seen[0]


def test_it_is_a_referring_model(rsr_tiny: RSRefSeg) -> None:
    assert isinstance(rsr_tiny, ReferringModel)
    assert rsr_tiny.architecture == "rsrefseg"
    assert rsr_tiny.image_features_frozen is False


def test_stage_shapes_and_49_sparse_tokens(rsr_tiny: RSRefSeg, pixels_128: torch.Tensor) -> None:
    with torch.no_grad():
        embedding, clip_map, size = rsr_tiny.encode_image(pixels_128)
    assert embedding.shape == (2, 32, 64, 64)  # SAM at 1024², patch 16
    assert clip_map.shape == (2, 64, 27, 27)  # SigLIP at 384², patch 14
    assert size.tolist() == [[128, 128], [128, 128]]
    sparse = _sparse_prompts(rsr_tiny, pixels_128, ["the red roofs", "the blue vehicles"])
    assert sparse.shape == (2, 1, 49, 32)  # 27 -> 14 -> 7


def test_logits_come_at_the_input_size(rsr_tiny: RSRefSeg) -> None:
    pixels = torch.zeros(1, 3, 96, 160)
    with torch.no_grad():
        logits = rsr_tiny(pixels, ["the road"])
    assert logits.shape == (1, 1, 96, 160)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_one_prompt_pairs_with_every_image(rsr_tiny: RSRefSeg, pixels_128: torch.Tensor) -> None:
    with torch.no_grad():
        image = rsr_tiny.encode_image(pixels_128)
        text = rsr_tiny.encode_text(["the largest pond"])
        shared = rsr_tiny.decode(image, text)
        repeated = rsr_tiny.decode(image, text.repeat(2))
        second = rsr_tiny.decode(select_rows(image, torch.tensor([1])), text)
    torch.testing.assert_close(shared, repeated)
    torch.testing.assert_close(shared[1:], second, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(shared[0], shared[1])  # different images, different masks


def test_prompt_count_must_match_or_be_one(rsr_tiny: RSRefSeg, pixels_128: torch.Tensor) -> None:
    with torch.no_grad():
        image = rsr_tiny.encode_image(torch.cat([pixels_128, pixels_128[:1]]))
        text = rsr_tiny.encode_text(["a", "b"])
        with pytest.raises(InputError, match="2 prompts for 3 images") as err:
            rsr_tiny.decode(image, text)
    assert "\n" not in str(err.value)


def test_sides_must_be_multiples_of_16(rsr_tiny: RSRefSeg) -> None:
    with pytest.raises(InputError, match="width 100 px is not a multiple of 16"):
        rsr_tiny.preprocess(torch.zeros(1, 3, 96, 100, dtype=torch.uint8))
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        rsr_tiny.encode_image(torch.zeros(3, 96, 96))


def test_tiny_forward_on_a_512_tile(rsr_tiny: RSRefSeg, capsys: pytest.CaptureFixture) -> None:
    pixels = torch.rand(1, 3, 512, 512) * 2 - 1
    with torch.no_grad():
        rsr_tiny(pixels, ["the red roofs"])  # warm-up
        start = time.perf_counter()
        logits = rsr_tiny(pixels, ["the red roofs"])
        elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nrsrefseg-tiny forward, one 512² tile: {elapsed:.3f} s")
    assert logits.shape == (1, 1, 512, 512)
    masks = rsr_tiny.postprocess(logits)
    assert masks.dtype == torch.bool
    assert torch.equal(masks, logits > 0)  # probability 0.5 <=> logit 0
    assert 0.01 < masks.float().mean() < 0.99


def test_image_features_keep_the_image(rsr_tiny: RSRefSeg, pixels_128: torch.Tensor) -> None:
    with torch.no_grad():
        embedding, clip_map, _ = rsr_tiny.encode_image(pixels_128)
    for features in (embedding, clip_map):
        a, b = features[0].flatten(), features[1].flatten()
        assert F.cosine_similarity(a - features.mean(0).flatten(), b, dim=0) < 0.9
        assert (a - b).norm() > 0.3 * a.norm()


def test_a_colour_difference_is_linearly_visible(rsr_tiny: RSRefSeg) -> None:
    # left half red, right half blue, with noise; a linear probe on the map finds the halves
    generator = torch.Generator().manual_seed(5)
    unit = 0.1 * torch.rand((1, 3, 384, 384), generator=generator)
    unit[:, 0, :, :192] += 0.8
    unit[:, 2, :, 192:] += 0.8
    with torch.no_grad():
        embedding, clip_map, _ = rsr_tiny.encode_image(unit * 2 - 1)
    for features in (clip_map, embedding):
        side = features.shape[-1]
        rows = features[0].flatten(1).T  # (positions, channels)
        labels = (torch.arange(side) < side // 2).float().repeat(side)
        keep = (torch.arange(side) - side / 2).abs().repeat(side) > 2  # off the boundary
        design = torch.cat([rows[keep], torch.ones(int(keep.sum()), 1)], dim=1)
        weights = torch.linalg.lstsq(design, labels[keep].unsqueeze(1)).solution
        accuracy = ((design @ weights).squeeze(1) > 0.5).float().eq(labels[keep]).float().mean()
        assert accuracy > 0.95


def test_text_features_tell_sentences_apart(rsr_tiny: RSRefSeg) -> None:
    with torch.no_grad():
        text = rsr_tiny.encode_text(["the red roofs", "the blue vehicles"])
    assert text.local.shape == (2, 64, 64)
    assert text.pooled.shape == (2, 64)
    assert F.cosine_similarity(text.pooled[0], text.pooled[1], dim=0) < 0.95
    assert text.mask[0].tolist()[:5] == [True, True, True, True, False]  # 3 words + </s>


def test_tokenizer_pads_to_64_and_flags_truncation(rsr_tiny: RSRefSeg) -> None:
    tokens = rsr_tiny.tokenize(["The RED roofs.", " ".join(["road"] * 70)])
    assert tokens.input_ids.shape == (2, 64)
    lower = rsr_tiny.tokenize(["the red roofs ."])
    assert torch.equal(tokens.input_ids[:1], lower.input_ids)
    assert tokens.truncated == [False, True]
    with pytest.raises(InputError, match=r"wrap a single prompt as \[text\]"):
        rsr_tiny.tokenize("the road")


@pytest.mark.parametrize(
    ("options", "tokens"),
    [
        ({"dense_prompt": False, "norm": "batch"}, 49),
        ({"down_spatial_times": 1, "mask_padding": True}, 196),
    ],
)
def test_prompter_options(options: dict, tokens: int, pixels_128: torch.Tensor) -> None:
    model = build_rsrefseg("rsrefseg-tiny", seed=0, **options).eval()
    sparse = _sparse_prompts(model, pixels_128, ["the river"])
    assert sparse.shape == (2, 1, tokens, 32)
    assert model.config.to_dict()["norm"] == options.get("norm", "group")


def test_config_round_trips_and_rejects_bad_values(rsr_tiny: RSRefSeg) -> None:
    config = rsr_tiny.config
    assert RSRefSegConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="norm='layer' is not a prompter norm") as err:
        config.replace(norm="layer")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="lora_dropout=1.0 must be in"):
        config.replace(lora_dropout=1.0)
    with pytest.raises(InputError, match="context_layers=9 must be in 0..8"):
        config.replace(context_layers=9)
