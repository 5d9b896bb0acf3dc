"""LoRA on RSRefSeg's encoders (peft), on exactly the modules RSREFSEG.md lists.

Targets are full-name regular expressions (peft ``fullmatch``es a string ``target_modules``)
applied to each tower separately, so that SAM's mask decoder (which has ``q_proj``/``v_proj``
too) and SigLIP vision's pooling head (whose ``nn.MultiheadAttention`` has an ``out_proj``) get
none. peft wraps each target in a LoRA layer: the base weight moves to ``<name>.base_layer``,
the adapter is ``<name>.lora_A.default`` / ``<name>.lora_B.default`` (a Conv2d pair for the SAM
neck's convolutions: A with the base kernel, B 1×1).
"""

from __future__ import annotations

from torch import nn

#: The LoRA adapter's name inside peft layers (part of every LoRA state-dict name).
ADAPTER = "default"
#: Marker of LoRA tensors in state-dict names.
LORA_MARKER = ".lora_"

#: Per tower (attribute path from the RSRefSeg model's ``siglip``/``sam``): the target regex.
TARGETS = {
    "sam.vision_encoder": r"(layers\.\d+\.(attn\.(qkv|proj)|mlp\.(lin1|lin2)))|neck\.(conv1|conv2)",
    "siglip.vision_model": r"encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)",
    "siglip.text_model": r"(encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj))|head",
}


def inject_lora(tower: nn.Module, target: str, *, rank: int, alpha: float, dropout: float) -> None:
    """Add LoRA (freshly initialised: B = 0) to the ``target`` modules of ``tower``, in place.

    Only the adapter's tensors are left trainable in ``tower``; its base weights are frozen.

    Raises:
        ValueError: no module of ``tower`` matches (a config that would train nothing).
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target)
    inject_adapter_in_model(config, tower, adapter_name=ADAPTER)
    for name, param in tower.named_parameters():
        param.requires_grad_(LORA_MARKER in f".{name}")


def lora_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every peft LoRA layer inside ``module``."""
    from peft.tuners.lora import LoraLayer

    return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, LoraLayer)]


def set_lora_dropout_mode(module: nn.Module, mode: bool) -> None:
    """Training mode of the LoRA dropouts only (their frozen hosts stay in eval mode)."""
    for _, layer in lora_layers(module):
        layer.lora_dropout.train(mode)
