"""Stable Diffusion 1.5's component sizes, and building the components from such sizes.

For building on the ``meta`` device (parameter counts, planning) and for the ``tiny`` preset's
small sizes (:mod:`diffris.models.diffris.tiny`); a real ``sd15`` model takes its architecture
from the folder's own configs.
"""

from __future__ import annotations

from typing import Any

from diffris.models.diffris.backbone import SDComponents
from diffris.models.diffris.text_encoder import load_bundled_tokenizer


def sd15_component_configs() -> dict[str, dict[str, Any]]:
    """Constructor arguments of Stable Diffusion 1.5's VAE and UNet and CLIP ViT-L/14 text.

    For building on the ``meta`` device (parameter counts, planning) without weights; a real
    ``sd15`` model takes its architecture from the folder's own configs.
    """
    return {
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "block_out_channels": [128, 256, 512, 512],
            "layers_per_block": 2,
            "latent_channels": 4,
            "norm_num_groups": 32,
            "sample_size": 512,
        },
        "unet": {
            "sample_size": 64,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": [
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ],
            "up_block_types": [
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ],
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        },
        "text": {
            "vocab_size": 49408,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "projection_dim": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
        },
    }


def components_from_configs(configs: dict[str, dict[str, Any]]) -> SDComponents:
    """Build VAE, UNet and text model from :func:`tiny_component_configs`-style arguments.

    Weights are the classes' random initialisation from the current RNG state; build inside
    ``with torch.device("meta"):`` to get shapes only. The tokenizer is the bundled CLIP one.
    """
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return SDComponents(
        vae=AutoencoderKL(**configs["vae"]),
        unet=UNet2DConditionModel(**configs["unet"]),
        text_model=CLIPTextModel(CLIPTextConfig(**configs["text"])),
        tokenizer=load_bundled_tokenizer(),
    )
