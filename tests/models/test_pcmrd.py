"""PCMRD and its OAQIL: hard straight-through grouping, noise, shapes, padding, ablations."""

import json

import pytest
import torch
import torch.nn.functional as F

from diffris.errors import InputError
from diffris.models.diffris.mask_head import DynamicConvHead, TokenMaskHead
from diffris.models.diffris.oaqil import OAQIL, GumbelOrder, average_assigned, gumbel_assign
from diffris.models.diffris.pcmrd import PCMRD, ContextBlock, PCMRDConfig

torch.set_num_threads(1)

CHANNELS = (64, 64, 32, 32)
STRIDES = (64, 32, 16, 8)
TEXT_DIM = 48
DIM = 32


def _features(size: tuple[int, int], batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, size[0] // s, size[1] // s, generator=generator)
        for c, s in zip(CHANNELS, STRIDES, strict=True)
    ]


def _text(batch: int = 2, length: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    text = torch.randn(batch, length, TEXT_DIM, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 3:] = False  # second sequence: 3 real tokens, 4 padding
    return text, mask


def _decoder(**changes: object) -> PCMRD:
    torch.manual_seed(0)
    config = PCMRDConfig(dim=DIM, heads=4, num_queries=4).replace(**changes)
    return PCMRD(config, feature_channels=CHANNELS, text_dim=TEXT_DIM)


def _oaqil(*, hard: bool = True) -> tuple[OAQIL, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    layer = OAQIL(DIM, 4, hard=hard)
    generator = torch.Generator().manual_seed(2)
    visual = torch.randn(2, DIM, 6, 5, generator=generator)
    tokens = torch.randn(2, 4, DIM, generator=generator)
    text = torch.randn(2, 7, DIM, generator=generator)
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 3:] = True
    return layer, (visual, tokens, text, padding)


# --- OAQIL -----------------------------------------------------------------------------------


@pytest.mark.parametrize("autocast", [False, True])
def test_hard_assignment_is_exactly_one_hot_in_forward(autocast):
    layer, (visual, tokens, _, _) = _oaqil()
    vectors = layer.norm_visual(visual.flatten(2).transpose(1, 2))
    for training in (True, False):
        layer.train(training)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            similarity = layer.similarity(vectors, tokens)
            assignment = layer.assign(similarity)
        assert similarity.dtype == assignment.dtype == torch.float32
        assert assignment.shape == (2, 30, 4)
        assert ((assignment == 0) | (assignment == 1)).all()
        assert torch.equal(assignment.sum(dim=-1), torch.ones(2, 30))
    # without noise, the assignment is the most similar token
    assert torch.equal(assignment.argmax(dim=-1), similarity.argmax(dim=-1))


def test_similarity_temperature_and_projections_get_straight_through_gradients():
    similarity = (torch.rand(2, 30, 4) * 2 - 1).requires_grad_(True)
    log_temperature = torch.tensor(-1.0, requires_grad=True)
    weights = torch.randn(2, 30, 4)
    assignment = gumbel_assign(similarity, log_temperature.exp(), hard=True, noise=True)
    (assignment * weights).sum().backward()
    assert similarity.grad is not None and torch.count_nonzero(similarity.grad) > 0
    assert log_temperature.grad is not None and log_temperature.grad != 0

    layer, inputs = _oaqil()
    layer.train()
    layer(*inputs).square().sum().backward()
    for name in ("proj_visual.weight", "proj_token.weight", "log_temperature", "value.weight"):
        grad = dict(layer.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and torch.count_nonzero(grad), name


def test_eval_is_deterministic_and_training_noise_is_seeded():
    layer, inputs = _oaqil()
    layer.eval()
    with torch.no_grad():
        assert torch.equal(layer(*inputs), layer(*inputs))
        layer.train()
        torch.manual_seed(3)
        first, second = layer(*inputs), layer(*inputs)
        torch.manual_seed(3)
        again = layer(*inputs)
    assert not torch.allclose(first, second)  # fresh Gumbel noise per call
    assert torch.equal(first, again)  # same seed, same noise


def test_soft_assignment_uses_no_noise_and_no_one_hot():
    layer, inputs = _oaqil(hard=False)
    layer.train()
    with torch.no_grad():
        torch.manual_seed(3)
        first = layer(*inputs)
        assert torch.equal(first, layer(*inputs))
        vectors = layer.norm_visual(inputs[0].flatten(2).transpose(1, 2))
        similarity = layer.similarity(vectors, inputs[1])
        assignment = layer.assign(similarity)
    assert torch.allclose(assignment, (similarity / layer.temperature).softmax(dim=-1))
    assert ((assignment > 0) & (assignment < 1)).any()


def test_tokens_average_the_vectors_assigned_to_them():
    values = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]]])  # (1, HW=3, C=2)
    assignment = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])  # N=3
    gathered = average_assigned(assignment, values)
    expected = torch.tensor([[[3.0, 2.0], [3.0, 2.0], [0.0, 0.0]]])  # token 2 gets nothing
    assert torch.allclose(gathered, expected, atol=1e-5)


def test_temperature_first_lets_the_similarity_beat_the_noise():
    generator = torch.Generator().manual_seed(4)
    best = torch.randint(0, 4, (1, 2000), generator=generator)
    similarity = 0.5 * F.one_hot(best, 4).float()  # a clear 0.5 cosine margin
    temperature = torch.tensor(0.02)
    torch.manual_seed(5)
    first = gumbel_assign(similarity, temperature, hard=True, noise=True).argmax(-1)
    late = gumbel_assign(
        similarity, temperature, hard=True, noise=True, order=GumbelOrder.NOISE_FIRST
    ).argmax(-1)
    assert (first == best).float().mean() > 0.99  # margin/τ = 25 dwarfs the noise
    assert (late == best).float().mean() < 0.5  # τ cannot move the boundary: noise wins


# --- PCMRD -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(256, 256), (512, 512), (192, 320)])
def test_output_shape_follows_output_size(size):
    decoder = _decoder()
    text, mask = _text()
    logits = decoder(_features(size), text, mask, size)
    assert logits.shape == (2, 1, *size) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_padding_tokens_do_not_change_the_logits():
    decoder = _decoder()
    text, mask = _text()
    changed = text.clone()
    changed[1, 3:] = 50.0 * torch.randn(4, TEXT_DIM)
    features = _features((256, 256))
    with torch.no_grad():
        for training in (False, True):
            decoder.train(training)
            torch.manual_seed(6)
            original = decoder(features, text, mask, (256, 256))
            torch.manual_seed(6)
            perturbed = decoder(features, changed, mask, (256, 256))
            assert torch.allclose(original, perturbed, atol=1e-5)
        decoder.eval()  # the tokenizer's 0/1 attention_mask works as well as a bool mask
        original = decoder(features, text, mask, (256, 256))
        assert torch.equal(decoder(features, text, mask.long(), (256, 256)), original)
        # real tokens do matter
        changed[1, 0] += 1.0
        assert not torch.allclose(original, decoder(features, changed, mask, (256, 256)))


def test_eval_output_does_not_depend_on_the_batch():
    decoder = _decoder().eval()
    text, mask = _text()
    features = _features((256, 256))
    with torch.no_grad():
        both = decoder(features, text, mask, (256, 256))
        single = decoder([f[1:] for f in features], text[1:], mask[1:], (256, 256))
        assert torch.equal(both, decoder(features, text, mask, (256, 256)))
    assert torch.allclose(both[1:], single, atol=1e-5)


def _check_trains(decoder: PCMRD) -> None:
    text, mask = _text()
    decoder.train()
    logits = decoder(_features((256, 256)), text, mask, (256, 256))
    target = (torch.rand_like(logits) > 0.5).float()
    F.binary_cross_entropy_with_logits(logits, target).backward()
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_full_decoder_trains_every_parameter():
    decoder = _decoder()
    assert decoder.coarsest is not None and decoder.queries is not None
    assert decoder.interactions is not None and len(decoder.interactions) == 3
    assert all(layer.hard for layer in decoder.interactions)
    assert isinstance(decoder.head, TokenMaskHead)
    _check_trains(decoder)


def test_without_multi_scale_each_stage_sees_one_level():
    decoder = _decoder(multi_scale=False)
    assert decoder.coarsest is None
    assert not any(name.startswith("coarsest") for name in decoder.state_dict())
    text, mask = _text()
    features = _features((256, 256))
    changed = [features[0] + 1.0, *features[1:]]
    with torch.no_grad():
        decoder.eval()
        assert torch.equal(
            decoder(features, text, mask, (256, 256)), decoder(changed, text, mask, (256, 256))
        )
        fused = _decoder().eval()  # with multi-scale fusion, level 0 matters
        assert not torch.allclose(
            fused(features, text, mask, (256, 256)), fused(changed, text, mask, (256, 256))
        )
    _check_trains(decoder)


def test_without_query_tokens_a_sentence_kernel_scores_the_pixels():
    decoder = _decoder(query_tokens=False)
    assert decoder.queries is None and decoder.interactions is None
    assert not any(isinstance(module, OAQIL) for module in decoder.modules())
    assert not any("queries" in name for name in decoder.state_dict())
    assert isinstance(decoder.head, DynamicConvHead)
    _check_trains(decoder)


def test_soft_assignment_switch_removes_the_noise():
    decoder = _decoder(hard_assignment=False)
    assert decoder.interactions is not None
    assert not any(layer.hard for layer in decoder.interactions)
    text, mask = _text()
    features = _features((256, 256))
    decoder.train()
    with torch.no_grad():
        assert torch.equal(
            decoder(features, text, mask, (256, 256)), decoder(features, text, mask, (256, 256))
        )
    _check_trains(decoder)


def test_context_block_starts_as_the_identity_and_sees_far_beyond_a_3x3_conv():
    torch.manual_seed(0)
    block = ContextBlock(DIM, 2)
    fused = torch.randn(1, DIM, 40, 40)
    with torch.no_grad():
        assert torch.equal(block(fused), fused)  # zero projection: a new block changes nothing
        torch.nn.init.normal_(block.project.weight)  # as after training
        moved = fused.clone()
        moved[..., 0, 0] += 5.0
        change = (block(moved) - block(fused)).abs().sum(dim=1)[0] - (moved - fused).abs().sum(1)[0]
    # pooled ×4, two 3×3 layers: a change at cell 0 reaches 10 cells (80 px at stride 8) away;
    # far away only the GroupNorm statistics move
    far = change[20:, 20:].abs().max()
    assert change[0, 10] > 5 * far and change[10, 0] > 5 * far


def test_context_block_is_off_by_default_and_starts_neutral_in_the_decoder():
    assert PCMRDConfig().context_layers == 0 and _decoder().context is None
    with_context = _decoder(context_layers=2)
    assert with_context.context is not None
    assert sum(isinstance(m, torch.nn.Conv2d) for m in with_context.context.modules()) == 3
    plain = _decoder()
    own = {k: v for k, v in with_context.state_dict().items() if not k.startswith("context.")}
    plain.load_state_dict(own)
    text, mask = _text()
    features = _features((256, 256))
    with torch.no_grad():
        assert torch.equal(
            with_context.eval()(features, text, mask, (256, 256)),
            plain.eval()(features, text, mask, (256, 256)),
        )
    _check_trains(with_context)
    # one step moves the zero projection, after which the context changes the logits
    with_context.zero_grad()
    logits = with_context.train()(features, text, mask, (256, 256))
    F.binary_cross_entropy_with_logits(
        logits, (features[-1][:, :1] > 0).float().repeat_interleave(8, -1).repeat_interleave(8, -2)
    ).backward()
    assert with_context.context.project.weight.grad.abs().sum() > 0


def test_runs_under_bfloat16_autocast():
    decoder = _decoder()
    text, mask = _text()
    features = _features((256, 256))
    decoder.eval()
    with torch.no_grad():
        reference = decoder(features, text, mask, (256, 256))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = decoder(features, text, mask, (256, 256))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert torch.corrcoef(torch.stack([logits.flatten(), reference.flatten()]))[0, 1] > 0.9


def test_bad_inputs_are_refused_with_one_clear_message():
    decoder = _decoder()
    text, mask = _text()
    features = _features((256, 256))
    with pytest.raises(InputError, match="expects 4 maps"):
        decoder(features[1:], text, mask, (256, 256))
    with pytest.raises(InputError, match="channels \\(64, 64, 32, 32\\)"):
        decoder([features[0][:, :32], *features[1:]], text, mask, (256, 256))
    with pytest.raises(InputError, match="expects text"):
        decoder(features, text[..., :8], mask, (256, 256))
    with pytest.raises(InputError, match="no real token"):
        decoder(features, text, torch.zeros_like(mask), (256, 256))
    with pytest.raises(InputError, match="4 positive feature channel"):
        PCMRD(PCMRDConfig(), feature_channels=(64, 32, 32), text_dim=8)  # type: ignore[arg-type]


def test_config_round_trip_and_validation():
    default = PCMRDConfig()
    assert (default.num_queries, default.dim, default.heads) == (8, 256, 8)
    assert default.multi_scale and default.query_tokens and default.hard_assignment
    config = PCMRDConfig(
        num_queries=4,
        dim=64,
        heads=4,
        multi_scale=False,
        query_tokens=False,
        hard_assignment=False,
        initial_temperature=0.5,
        gumbel_order=GumbelOrder.NOISE_FIRST,
        mlp_ratio=2.0,
        context_layers=3,
    )
    plain = json.loads(json.dumps(config.to_dict()))
    assert plain["gumbel_order"] == "noise_first"
    assert PCMRDConfig.from_dict(plain) == config
    assert PCMRDConfig.from_dict(default.to_dict()) == default
    with pytest.raises(InputError, match="unknown PCMRDConfig option"):
        PCMRDConfig.from_dict({"queries": 8})
    with pytest.raises(InputError, match="not a valid GumbelOrder"):
        PCMRDConfig.from_dict({"gumbel_order": "sideways"})
    with pytest.raises(InputError, match="not divisible by heads=3"):
        PCMRDConfig(heads=3)
    with pytest.raises(InputError, match="context_layers=-1 must be 0"):
        PCMRDConfig(context_layers=-1)


def test_sd15_sizes_build_on_the_meta_device():
    with torch.device("meta"):
        decoder = PCMRD(PCMRDConfig(), feature_channels=(1280, 1280, 640, 320), text_dim=768)
    # 6,953,732 for the paper-sized parts + the sentence conditioning: gate 256·256 + 256 and
    # kernel generator 256·257 + 257
    assert sum(p.numel() for p in decoder.parameters()) == 6_953_732 + 65_792 + 66_049
