"""RSRefSeg's training surface: LoRA on exactly the listed modules, what trains and what stays
frozen, and the trainable state that a trained folder stores and loads back."""

import re

import pytest
import torch
import torch.nn.functional as F

from diffris.errors import CheckpointMismatchError
from diffris.models.rsrefseg.build import build_rsrefseg
from diffris.models.rsrefseg.lora import lora_layers
from diffris.models.rsrefseg.model import RSRefSeg

#: The LoRA targets of the tiny model (2 layers per tower), as RSREFSEG.md lists them.
EXPECTED_LORA = (
    {f"sam.vision_encoder.layers.{i}.{m}" for i in range(2) for m in ("attn.qkv", "attn.proj")}
    | {f"sam.vision_encoder.layers.{i}.mlp.{m}" for i in range(2) for m in ("lin1", "lin2")}
    | {"sam.vision_encoder.neck.conv1", "sam.vision_encoder.neck.conv2"}
    | {
        f"siglip.{tower}.encoder.layers.{i}.self_attn.{m}"
        for tower in ("vision_model", "text_model")
        for i in range(2)
        for m in ("q_proj", "k_proj", "v_proj", "out_proj")
    }
    | {"siglip.text_model.head"}
)


def _toy_step(model: RSRefSeg, optimiser: torch.optim.Optimizer, pixels: torch.Tensor) -> float:
    target = torch.zeros(pixels.shape[0], 1, *pixels.shape[-2:])
    target[..., : pixels.shape[-2] // 2, :] = 1
    logits = model(pixels, ["the red roofs", "the blue vehicles"])
    loss = 5.0 * F.binary_cross_entropy_with_logits(logits, target)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def test_lora_sits_on_exactly_the_listed_modules(rsr_tiny: RSRefSeg) -> None:
    assert {name for name, _ in lora_layers(rsr_tiny)} == EXPECTED_LORA
    names = [name for name, _ in rsr_tiny.named_parameters()]
    assert not [n for n in names if ".lora_" in n and ("mask_decoder" in n or "prompt_" in n)]
    assert not [n for n in names if ".lora_" in n and "vision_model.head" in n]
    neck = rsr_tiny.sam.vision_encoder.neck.conv2
    assert isinstance(neck.lora_A["default"], torch.nn.Conv2d)  # peft's Conv2d LoRA
    assert neck.lora_A["default"].kernel_size == (3, 3)
    assert neck.r["default"] == 16
    assert neck.scaling["default"] == pytest.approx(1.0)  # alpha 16 / r 16


def test_requires_grad_is_exactly_the_trainable_set(rsr_tiny: RSRefSeg) -> None:
    trainable = {id(p) for p in rsr_tiny.trainable_parameters()}
    assert trainable == {id(p) for p in rsr_tiny.parameters() if p.requires_grad}
    siglip = rsr_tiny.siglip
    assert not siglip.logit_scale.requires_grad and not siglip.logit_bias.requires_grad
    total = sum(p.numel() for p in rsr_tiny.parameters())
    assert rsr_tiny.trainable_parameter_count() + rsr_tiny.frozen_parameter_count() == total
    modules = rsr_tiny.trainable_modules()
    held = {id(p) for module in modules.values() for p in module.parameters()}
    assert trainable <= held


def test_training_moves_only_lora_and_heads(pixels_128: torch.Tensor) -> None:
    model = build_rsrefseg("rsrefseg-tiny", seed=0).train()
    assert not model.siglip.vision_model.training and not model.sam.vision_encoder.training
    assert model.prompter.training and model.sam.mask_decoder.training
    q_proj = model.siglip.text_model.encoder.layers[0].self_attn.q_proj
    assert q_proj.lora_dropout["default"].training  # LoRA dropout follows the mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3, weight_decay=0.05)
    for _ in range(3):
        _toy_step(model, optimiser, pixels_128)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen = {k for k in before if not model.is_trainable_name(k)}
    # the one tied tensor: SamModel's shared positional embedding is the prompt encoder's
    tied = {"sam.shared_image_embedding.positional_embedding"}
    assert not (changed & frozen) - tied
    for pattern in (r"\.lora_B\.", r"^prompter\.", r"^sam\.mask_decoder\.", r"^sam\.prompt_"):
        assert any(re.search(pattern, k) for k in changed), pattern
    # LoRA moved both encoders: image features now differ from the base model's
    assert any("sam.vision_encoder" in k for k in changed)
    assert any("siglip.vision_model" in k for k in changed)
    assert any("siglip.text_model" in k for k in changed)


@pytest.mark.parametrize("dense_prompt", [True, False])
def test_every_trainable_parameter_gets_a_gradient(dense_prompt: bool) -> None:
    model = build_rsrefseg("rsrefseg-tiny", seed=0, dense_prompt=dense_prompt).train()
    model(torch.rand(2, 3, 64, 64) * 2 - 1, ["the red roofs", "a car"]).mean().backward()
    missing = [n for n, p in model.named_trainable_parameters() if p.grad is None]
    assert missing == []  # DDP without find_unused_parameters
    idle = "sam.mask_decoder.iou_prediction_head.proj_in.weight"
    assert idle in model.trainable_state_dict()  # stored with the heads, not trained
    assert idle not in dict(model.named_trainable_parameters())


def test_gradients_reach_the_image_lora(pixels_128: torch.Tensor) -> None:
    model = build_rsrefseg("rsrefseg-tiny", seed=0).train()
    embedding, clip_map, _ = model.encode_image(pixels_128)
    (embedding.square().mean() + clip_map.square().mean()).backward()
    qkv = model.sam.vision_encoder.layers[0].attn.qkv
    assert qkv.lora_B["default"].weight.grad.abs().sum() > 0
    assert qkv.base_layer.weight.grad is None


def test_trainable_state_holds_only_lora_and_heads(rsr_tiny: RSRefSeg) -> None:
    state = rsr_tiny.trainable_state_dict()
    heads = ("prompter.", "sam.prompt_encoder.", "sam.mask_decoder.")
    assert all(".lora_" in k or k.startswith(heads) for k in state)
    assert not [k for k in state if "base_layer" in k or k.startswith("siglip.logit")]
    lora = [k for k in state if ".lora_" in k]
    assert len(lora) == 2 * len(EXPECTED_LORA)  # A and B of each
    assert any(k.startswith("sam.prompt_encoder.mask_embed.") for k in state)


def test_loaded_trainable_state_reproduces_the_outputs(pixels_128: torch.Tensor) -> None:
    trained = build_rsrefseg("rsrefseg-tiny", seed=0).train()
    optimiser = torch.optim.AdamW(trained.trainable_parameters(), lr=1e-3)
    for _ in range(2):
        _toy_step(trained, optimiser, pixels_128)
    trained.eval()
    fresh = build_rsrefseg("rsrefseg-tiny", seed=7).eval()
    texts = ["the river", "the largest pond"]
    with torch.no_grad():
        assert not torch.equal(fresh(pixels_128, texts), trained(pixels_128, texts))
        fresh.load_trainable_state_dict(
            {k: v.clone() for k, v in trained.trainable_state_dict().items()}
        )
        assert torch.equal(fresh(pixels_128, texts), trained(pixels_128, texts))


def test_a_mismatched_state_names_every_problem(rsr_tiny: RSRefSeg) -> None:
    state = dict(rsr_tiny.trainable_state_dict())
    missing = next(k for k in state if ".lora_A." in k)
    reshaped = "prompter.out.weight"
    del state[missing]
    state[reshaped] = torch.zeros(3, 3)
    state["prompter.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"\(3 problem\(s\)\)") as err:
        rsr_tiny.load_trainable_state_dict(state, source="model.safetensors")
    message = str(err.value)
    assert "\n" not in message
    assert f"missing {missing}" in message
    assert "unexpected prompter.extra.weight" in message
    assert f"{reshaped} has shape (3, 3)" in message
    assert message.startswith("model.safetensors does not match")


def test_the_context_block_starts_as_the_identity_trains_and_is_stored(
    pixels_128: torch.Tensor, tmp_path
) -> None:
    """``context_layers`` adds a block on SAM's embedding: a fresh one changes nothing (the
    same seed gives the same outputs as a model without it), it is trained as a head, and a
    saved folder holds it and reloads to the same outputs."""
    from diffris.models.checkpoint import load_trained, save_trained

    plain = build_rsrefseg("rsrefseg-tiny", seed=0).eval()
    model = build_rsrefseg("rsrefseg-tiny", seed=0, context_layers=2)
    texts = ["the red roofs", "the blue vehicles"]
    with torch.no_grad():
        assert torch.equal(plain(pixels_128, texts), model.eval()(pixels_128, texts))
    names = [name for name, _ in model.named_trainable_parameters()]
    assert any(name.startswith("context.body.1.") for name in names)
    assert not any(name.startswith("context.body.2.") for name in names)
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    for _ in range(2):
        _toy_step(model, optimiser, pixels_128)
    assert model.context.project.weight.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert not torch.equal(plain(pixels_128, texts), model(pixels_128, texts))
    save_trained(model, tmp_path / "trained")
    reloaded = load_trained(tmp_path / "trained")
    assert reloaded.config.context_layers == 2
    with torch.no_grad():
        assert torch.equal(model(pixels_128, texts), reloaded(pixels_128, texts))


def test_without_text_lora_the_text_features_stay_fixed(pixels_128: torch.Tensor) -> None:
    """``text_lora=False``: no LoRA in SigLIP's text tower, so training leaves every prompt's
    features as the frozen tower gives them (and the folder stores no text tensors)."""
    model = build_rsrefseg("rsrefseg-tiny", seed=0, text_lora=False)
    names = {name for name, _ in lora_layers(model)}
    assert names == {name for name in EXPECTED_LORA if not name.startswith("siglip.text_model.")}
    texts = ["the red roofs", "the blue vehicles"]
    with torch.no_grad():
        before = model.encode_text(texts)
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    _toy_step(model, optimiser, pixels_128)
    model.eval()
    with torch.no_grad():
        after = model.encode_text(texts)
    assert torch.equal(before.local, after.local) and torch.equal(before.pooled, after.pooled)
    assert not any(k.startswith("siglip.text_model.") for k in model.trainable_state_dict())
