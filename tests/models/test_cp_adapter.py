"""CP-adapter: zero-initialised adjustment, identity at init, switches, padding, configs."""

import itertools
import json

import pytest
import torch

from diffris.errors import InputError
from diffris.models.diffris.cp_adapter import (
    ContextEncoder,
    CPAdapter,
    CPAdapterConfig,
    LowRankAdjustment,
    ObjectReasoning,
)

torch.set_num_threads(1)

DIM = 32
SWITCHES = list(itertools.product([True, False], repeat=3))


def _inputs(batch: int = 2, length: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    text = torch.randn(batch, length, DIM, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 5:] = False  # first sequence: 5 real tokens, 4 padding
    return text, mask


def _adapter(**changes: object) -> CPAdapter:
    torch.manual_seed(0)
    return CPAdapter(CPAdapterConfig(heads=4, rank=4).replace(**changes), dim=DIM)


def _randomise_zeroed(adapter: CPAdapter) -> None:
    """Give the zero-initialised up-projection non-zero weights, as after some training."""
    if adapter.adjustment is not None:
        with torch.no_grad():
            adapter.adjustment.up.weight.normal_(std=0.1)


def test_low_rank_up_projection_is_zero_and_contributes_nothing_at_init():
    for identity_init in (True, False):
        adapter = _adapter(identity_init=identity_init)
        assert adapter.adjustment is not None
        assert torch.count_nonzero(adapter.adjustment.up.weight) == 0
        assert torch.count_nonzero(adapter.adjustment.down.weight) > 0
    text, _ = _inputs()
    adjustment = LowRankAdjustment(DIM, 4)
    assert torch.equal(adjustment(text), text)


@pytest.mark.parametrize(("context", "reasoning", "adjust"), SWITCHES)
def test_identity_at_init_then_trainable_in_every_ablation(context, reasoning, adjust):
    adapter = _adapter(global_context=context, object_reasoning=reasoning, domain_adjustment=adjust)
    text, mask = _inputs()
    refined = adapter(text, mask)
    assert torch.equal(refined, text)  # the frozen UNet sees CLIP's own features at step 0
    tilted = _adapter(
        global_context=context,
        object_reasoning=reasoning,
        domain_adjustment=adjust,
        fusion_logit_init=0.3,
    )
    assert torch.equal(tilted(text, mask), text)  # exactly, whatever α
    if context or reasoning or adjust:
        torch.manual_seed(1)
        target = torch.randn_like(text)
        optimiser = torch.optim.Adam(adapter.parameters(), lr=1e-2)
        for _ in range(2):
            optimiser.zero_grad()
            (adapter(text, mask) - target).square().mean().backward()
            optimiser.step()
        assert not torch.equal(adapter(text, mask), text)


def test_zeroed_projections_get_gradients_at_the_first_step():
    adapter = _adapter()
    text, mask = _inputs()
    adapter(text, mask).square().sum().backward()
    assert adapter.adjustment is not None and adapter.reasoning is not None
    for name, parameter in [
        ("adjustment.up", adapter.adjustment.up.weight),
        ("reasoning.attn.out_proj", adapter.reasoning.attn.out_proj.weight),
        ("reasoning.mlp[2]", adapter.reasoning.mlp[2].weight),
    ]:
        assert parameter.grad is not None and torch.count_nonzero(parameter.grad) > 0, name


@pytest.mark.parametrize(("context", "reasoning", "adjust"), SWITCHES)
def test_switches_change_structure_and_still_train(context, reasoning, adjust):
    adapter = _adapter(
        global_context=context,
        object_reasoning=reasoning,
        domain_adjustment=adjust,
        identity_init=False,
    )
    kinds = {type(module) for module in adapter.modules()}
    assert (ContextEncoder in kinds) is context and (adapter.context is not None) is context
    assert (ObjectReasoning in kinds) is reasoning and (adapter.reasoning is not None) is reasoning
    assert (LowRankAdjustment in kinds) is adjust and (adapter.adjustment is not None) is adjust
    if not (context or reasoning):
        assert torch.nn.MultiheadAttention not in kinds
    _randomise_zeroed(adapter)
    text, mask = _inputs()
    text.requires_grad_(True)
    refined = adapter(text, mask)
    assert refined.shape == text.shape and torch.isfinite(refined).all()
    refined.square().mean().backward()
    assert text.grad is not None and torch.isfinite(text.grad).all()
    for name, parameter in adapter.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    # every enabled component changes the features, so F_r differs from F_l
    assert not torch.allclose(refined, text) or not (context or reasoning or adjust)


def test_context_layers_stack():
    adapter = _adapter(context_layers=2)
    assert adapter.context is not None and len(adapter.context.layers) == 2


def test_fusion_is_alpha_weighted_average_of_adjusted_and_original():
    adapter = _adapter(identity_init=False)
    _randomise_zeroed(adapter)
    with torch.no_grad():
        adapter.fusion_logit.fill_(0.7)
    text, mask = _inputs()
    padding = ~mask
    assert adapter.context is not None and adapter.reasoning is not None
    assert adapter.adjustment is not None
    with torch.no_grad():
        adjusted = adapter.adjustment(
            adapter.reasoning(text, adapter.context(text, padding), padding)
        )
        alpha = torch.sigmoid(torch.tensor(0.7))
        expected = alpha * adjusted + (1 - alpha) * text
        assert torch.allclose(adapter(text, mask), expected, atol=1e-6)
    assert torch.isclose(_adapter().alpha, torch.tensor(0.5))  # default logit 0


def test_padding_values_do_not_change_real_tokens():
    adapter = _adapter(identity_init=False).eval()
    _randomise_zeroed(adapter)
    text, mask = _inputs()
    changed = text.clone()
    changed[0, 5:] = 100.0 * torch.randn(4, DIM)
    for training in (False, True):
        adapter.train(training)
        with torch.no_grad():
            original, perturbed = adapter(text, mask), adapter(changed, mask)
        assert torch.allclose(original[mask], perturbed[mask], atol=1e-5)
        assert torch.isfinite(perturbed).all()
        assert not torch.allclose(original[0, 5:], perturbed[0, 5:])  # padding is still refined
    with torch.no_grad():  # the tokenizer's 0/1 attention_mask works as well as a bool mask
        assert torch.equal(adapter(text, mask.long()), adapter(text, mask))


def test_runs_under_bfloat16_autocast():
    adapter = _adapter(identity_init=False)
    _randomise_zeroed(adapter)
    text, mask = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        refined = adapter(text, mask)
    assert refined.shape == text.shape and torch.isfinite(refined).all()
    assert torch.allclose(refined.float(), adapter(text, mask), atol=0.1)


def test_bad_inputs_are_refused_with_one_clear_message():
    adapter = _adapter()
    text, mask = _inputs()
    with pytest.raises(InputError, match="expects text"):
        adapter(text[..., :16], mask)
    with pytest.raises(InputError, match="no real token"):
        adapter(text, torch.zeros_like(mask))
    with pytest.raises(InputError, match="not divisible by heads=5"):
        CPAdapter(CPAdapterConfig(heads=5), dim=DIM)
    with pytest.raises(InputError, match="rank=64 exceeds"):
        CPAdapter(CPAdapterConfig(heads=4, rank=64), dim=DIM)


def test_config_round_trip_and_validation():
    default = CPAdapterConfig()
    assert (default.global_context, default.context_layers, default.heads) == (True, 1, 8)
    assert (default.object_reasoning, default.domain_adjustment, default.rank) == (True, True, 16)
    config = CPAdapterConfig(
        global_context=False,
        context_layers=2,
        heads=4,
        ffn_ratio=2.0,
        object_reasoning=False,
        mlp_ratio=0.5,
        domain_adjustment=False,
        rank=8,
        fusion_logit_init=-1.5,
        identity_init=False,
    )
    plain = json.loads(json.dumps(config.to_dict()))
    assert CPAdapterConfig.from_dict(plain) == config
    assert CPAdapterConfig.from_dict(default.to_dict()) == default
    with pytest.raises(InputError, match="unknown CPAdapterConfig option"):
        CPAdapterConfig.from_dict({"ranks": 4})
    with pytest.raises(InputError, match="rank=0"):
        CPAdapterConfig(rank=0)
