"""RSRefSeg presets: the tiny one is deterministic and leaves the RNG alone, the real ones have
the published sizes, and bad names or options fail in one line."""

import pytest
import torch

from diffris.errors import InputError
from diffris.models.rsrefseg.build import (
    RSREFSEG_PRESETS,
    backbone_identity,
    build_on_meta,
    build_rsrefseg,
    build_tiny_components,
    rebuild,
)
from diffris.models.rsrefseg.components import RSRefSegComponents


def _millions(module: torch.nn.Module) -> float:
    """Base parameters (LoRA excluded) in millions, rounded to 0.01 M."""
    count = sum(p.numel() for n, p in module.named_parameters() if ".lora_" not in n)
    return round(count / 1e6, 2)


def test_tiny_components_are_bit_identical_and_leave_the_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first, second = build_tiny_components(), build_tiny_components()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert isinstance(first, RSRefSegComponents)
    for a, b in ((first.siglip, second.siglip), (first.sam, second.sam)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_model_with_a_seed_is_reproducible_and_fingerprinted() -> None:
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    a = build_rsrefseg("rsrefseg-tiny", seed=1)
    b = build_rsrefseg("rsrefseg-tiny", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    identity = a.config.backbone
    assert identity == b.config.backbone
    assert len(identity.fingerprint) == 16 and identity.fingerprint_scheme == 2
    assert (identity.clip_dim, identity.sam_dim) == (64, 32)


def test_fingerprint_follows_the_frozen_weights() -> None:
    components = build_tiny_components()
    before = backbone_identity(components, "rsrefseg-tiny")
    with torch.no_grad():
        components.sam.vision_encoder.layers[0].mlp.lin1.weight.mul_(1.5)
    after = backbone_identity(components, "rsrefseg-tiny")
    assert after.siglip_fingerprint == before.siglip_fingerprint
    assert after.sam_fingerprint != before.sam_fingerprint
    assert after.fingerprint != before.fingerprint


def test_real_presets_on_meta_have_the_published_sizes() -> None:
    base, large = build_on_meta("rsrefseg-b"), build_on_meta("rsrefseg-l")
    assert _millions(base.siglip) == 877.96
    assert _millions(base.siglip.vision_model) == 428.23
    assert _millions(base.siglip.text_model) == 449.73
    assert _millions(base.sam) == 93.74
    assert _millions(base.sam.vision_encoder) == 89.67
    assert _millions(large.sam) == 312.34
    assert round(base.trainable_parameter_count() / 1e6, 2) == 16.48
    assert round(large.trainable_parameter_count() / 1e6, 2) == 20.42
    assert base.config.backbone.fingerprint == ""
    assert (base.config.siglip_size, base.config.sam_size) == (384, 1024)
    assert (base.config.backbone.clip_dim, base.config.backbone.sam_dim) == (1152, 256)


def test_unknown_preset_and_option_fail_in_one_line() -> None:
    with pytest.raises(InputError, match="choose one of: rsrefseg-tiny, rsrefseg-b, rsrefseg-l"):
        build_rsrefseg("rsrefseg-h")
    with pytest.raises(InputError, match="unknown RSRefSeg option") as err:
        build_rsrefseg("rsrefseg-tiny", lora_rnak=8)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="exceeds SigLIP text's 64 positions"):
        build_rsrefseg("rsrefseg-tiny", max_tokens=65)
    assert set(RSREFSEG_PRESETS) == {"rsrefseg-tiny", "rsrefseg-b", "rsrefseg-l"}


def test_rebuild_gives_the_model_a_config_describes() -> None:
    model = build_rsrefseg("rsrefseg-tiny", seed=0, lora_rank=4, norm="batch", dense_prompt=False)
    again = rebuild(model.config)
    assert again.config == model.config
    assert again.trainable_state_dict().keys() == model.trainable_state_dict().keys()
    shapes = {k: v.shape for k, v in model.trainable_state_dict().items()}
    assert {k: v.shape for k, v in again.trainable_state_dict().items()} == shapes


def test_tiny_on_meta_counts_like_the_built_tiny() -> None:
    meta, built = build_on_meta("rsrefseg-tiny"), build_rsrefseg("rsrefseg-tiny", seed=0)
    assert meta.trainable_parameter_count() == built.trainable_parameter_count() == 118_440
    assert meta.frozen_parameter_count() == built.frozen_parameter_count() == 478_694
    assert meta.config.backbone.fingerprint == ""
