"""Component configs of RSRefSeg's presets: SigLIP so400m, SAM ViT-B/L and the tiny ones.

Sizes live here and only here. A real ``rsrefseg-b``/``-l`` takes its architecture from the
folders' own configs; these build it on the ``meta`` device (counts, planning).
"""

from __future__ import annotations

from typing import Any

#: Vocabulary size of the bundled tiny tokenizer (diffris/assets/siglip_tokenizer).
TINY_VOCAB = 488
#: SigLIP's ``</s>``: end of sequence and padding (as in the real tokenizer).
EOS_ID = 1


def so400m_siglip_config() -> dict[str, dict[str, Any]]:
    """``SiglipConfig`` arguments of google/siglip-so400m-patch14-384 (877.96 M parameters)."""
    width = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27}
    return {
        "text_config": {
            **width,
            "num_attention_heads": 16,
            "vocab_size": 32000,
            "max_position_embeddings": 64,
            "projection_size": 1152,
            "pad_token_id": EOS_ID,
            "bos_token_id": None,
            "eos_token_id": EOS_ID,
        },
        "vision_config": {**width, "num_attention_heads": 16, "image_size": 384, "patch_size": 14},
    }


def _sam_config(hidden: int, layers: int, heads: int, global_layers: list[int]) -> dict[str, Any]:
    return {
        "vision_config": {
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "mlp_dim": 4 * hidden,
            "global_attn_indexes": global_layers,
            "output_channels": 256,
            "num_pos_feats": 128,
            "image_size": 1024,
            "patch_size": 16,
            "window_size": 14,
        },
        "prompt_encoder_config": {"hidden_size": 256},
        "mask_decoder_config": {"hidden_size": 256},
    }


def sam_vit_b_config() -> dict[str, dict[str, Any]]:
    """``SamConfig`` arguments of facebook/sam-vit-base (93.74 M parameters)."""
    return _sam_config(768, 12, 12, [2, 5, 8, 11])


def sam_vit_l_config() -> dict[str, dict[str, Any]]:
    """``SamConfig`` arguments of facebook/sam-vit-large (312.34 M parameters)."""
    return _sam_config(1024, 24, 16, [5, 11, 17, 23])


def tiny_component_configs() -> dict[str, dict[str, Any]]:
    """``SiglipConfig`` and ``SamConfig`` arguments of ``rsrefseg-tiny``.

    The same classes as the real models, narrow: SigLIP keeps 384² at patch 14 (a 27×27 grid,
    which two stride-2 convolutions take to 7×7 = 49 tokens) and 64 positions, 64 wide; SAM keeps
    1024² at patch 16 (64×64 tokens) but 32 wide with two windowed layers (4,096 tokens of global
    attention would dominate the time), and a 32-wide prompt encoder and mask decoder.
    """
    return {
        "siglip": {
            "text_config": {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "vocab_size": TINY_VOCAB,
                "max_position_embeddings": 64,
                "projection_size": 64,
                "pad_token_id": EOS_ID,
                "bos_token_id": None,
                "eos_token_id": EOS_ID,
            },
            "vision_config": {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "image_size": 384,
                "patch_size": 14,
            },
        },
        "sam": {
            "vision_config": {
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "mlp_dim": 64,
                "global_attn_indexes": [],
                "output_channels": 32,
                "num_pos_feats": 16,
                "image_size": 1024,
                "patch_size": 16,
                "window_size": 14,
            },
            "prompt_encoder_config": {"hidden_size": 32, "mask_input_channels": 16},
            "mask_decoder_config": {
                "hidden_size": 32,
                "mlp_dim": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "iou_head_hidden_dim": 32,
            },
        },
    }
