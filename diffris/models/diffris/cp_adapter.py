"""The context-perception adapter (CP-adapter): refines CLIP text features before the UNet.

Paper section 3.3, eqs. 7–13. Input F_l (B, L, D) from the frozen CLIP text encoder, output
F_r (B, L, D), the UNet's ``encoder_hidden_states``. Three switchable components (paper Table 4):

1. global context: a small pre-norm Transformer encoder over F_l -> F_g (eq. 7);
2. object-aware reasoning: cross-attention, Q from F_l, K and V from F_g, added to F_l as a
   residual -> F_e (eqs. 8–10); then F_e + MLP(F_e), MLP = Linear-ReLU-Linear (eq. 11);
3. domain-specific adjustment: a low-rank map D -> r -> D added to the features, its
   up-projection initialised to zero (eq. 12);

and the fusion F_r = α·F_adjusted + (1 − α)·F_l with α = sigmoid(learnable logit) (eq. 13).
A component that is switched off is the identity (its input passes through unchanged).

Initialisation (a choice, ``identity_init``): the last projection of every residual branch is
zero, so F_r == F_l exactly at initialisation in every ablation setting. The frozen UNet was trained
on CLIP features; starting from exactly those keeps its features (and so the decoder's inputs)
meaningful from the first step, and the adapter learns a departure from them (the ControlNet /
ReZero / LoRA idea). Gradients still reach every part: the zeroed projections get non-zero
gradients at step 0, and the layers before them from step 1 on.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import Tensor, nn

from diffris.config import Config, check_at_most
from diffris.errors import InputError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CPAdapterConfig(Config):
    """Sizes and switches of the CP-adapter; every default is the paper's / MODEL.md's choice.

    Attributes:
        global_context: component 1, the Transformer encoder (Table 4 row 2).
        context_layers: Transformer encoder layers (choice: 1; the paper allows 1–2).
        heads: attention heads of the encoder and of the cross-attention; must divide the width.
        ffn_ratio: hidden width of the encoder's feed-forward block, as a multiple of the width
            (choice: 4, the Transformer convention).
        object_reasoning: component 2, cross-attention + MLP (Table 4 row 3).
        mlp_ratio: hidden width of the reasoning MLP (eq. 11) as a multiple of the width (choice:
            1, keeping the adapter light).
        domain_adjustment: component 3, the low-rank adjustment (Table 4 row 4).
        rank: rank r of the low-rank adjustment (choice: 16).
        fusion_logit_init: initial logit of α (choice: 0, so α = 0.5, where the sigmoid is
            steepest and α can move either way; F_r == F_l at init comes from ``identity_init``,
            not from α).
        identity_init: zero the last projection of every residual branch so that F_r == F_l at
            initialisation (choice: True; False keeps PyTorch's default initialisation, except for
            the low-rank up-projection, which the paper always zeroes).
    """

    global_context: bool = True
    context_layers: int = 1
    heads: int = 8
    ffn_ratio: float = 4.0
    object_reasoning: bool = True
    mlp_ratio: float = 1.0
    domain_adjustment: bool = True
    rank: int = 16
    fusion_logit_init: float = 0.0
    identity_init: bool = True

    def __post_init__(self) -> None:
        for name in ("context_layers", "heads", "rank"):
            if getattr(self, name) < 1:
                raise InputError(f"CP-adapter {name}={getattr(self, name)} must be at least 1")
        for name in ("ffn_ratio", "mlp_ratio"):
            if getattr(self, name) <= 0:
                raise InputError(f"CP-adapter {name}={getattr(self, name)} must be positive")
        check_at_most("CP-adapter", self, _LIMITS)


#: Sizes past these would not fit any accelerator.
_LIMITS = {"context_layers": 64, "heads": 256, "ffn_ratio": 64.0, "mlp_ratio": 64.0, "rank": 4096}


def _zero_(layer: nn.Linear) -> None:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class _EncoderLayer(nn.Module):
    """One pre-norm Transformer encoder layer: x + MHSA(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, *, identity_init: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        last = nn.Linear(hidden, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), last)
        if identity_init:
            _zero_(self.attn.out_proj)
            _zero_(last)

    def forward(self, x: Tensor, key_padding_mask: Tensor) -> Tensor:
        """(B, L, D) -> (B, L, D); ``key_padding_mask`` (B, L) bool, True = padding (ignored)."""
        h = self.norm1(x)
        x = x + self.attn(h, h, h, key_padding_mask=key_padding_mask, need_weights=False)[0]
        return x + self.ffn(self.norm2(x))


class ContextEncoder(nn.Module):
    """Global context modelling (eq. 7): a stack of pre-norm Transformer encoder layers."""

    def __init__(self, dim: int, heads: int, layers: int, hidden: int, *, identity_init: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            _EncoderLayer(dim, heads, hidden, identity_init=identity_init) for _ in range(layers)
        )

    def forward(self, x: Tensor, key_padding_mask: Tensor) -> Tensor:
        """F_l (B, L, D) -> F_g (B, L, D); padding keys are never attended to."""
        for layer in self.layers:
            x = layer(x, key_padding_mask)
        return x


class ObjectReasoning(nn.Module):
    """Object-aware reasoning (eqs. 8–11): F_e = F_l + Attn(F_l, F_g); F_e + MLP(F_e).

    Pre-norm (a choice): the queries, keys/values and MLP input are layer-normalised inside the
    branches so that the residual stream stays F_l itself, with CLIP's statistics.
    """

    def __init__(self, dim: int, heads: int, hidden: int, *, identity_init: bool) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        last = nn.Linear(hidden, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), last)
        if identity_init:
            _zero_(self.attn.out_proj)
            _zero_(last)

    def forward(self, text: Tensor, context: Tensor, key_padding_mask: Tensor) -> Tensor:
        """Q from ``text`` (F_l), K and V from ``context`` (F_g), both (B, L, D) -> (B, L, D)."""
        kv = self.norm_kv(context)
        attended = self.attn(
            self.norm_q(text), kv, kv, key_padding_mask=key_padding_mask, need_weights=False
        )[0]
        enhanced = text + attended
        return enhanced + self.mlp(self.norm_mlp(enhanced))


class LowRankAdjustment(nn.Module):
    """Domain-specific adjustment (eq. 12): x + up(down(x)), rank r, ``up`` initialised to zero."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=5**0.5)  # LoRA's choice for the down side
        nn.init.zeros_(self.up.weight)  # the paper: no perturbation at the start of fine-tuning

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, D) -> (B, L, D)."""
        return x + self.up(self.down(x))


class CPAdapter(nn.Module):
    """The CP-adapter: F_l (B, L, D) -> F_r (B, L, D).

    Args:
        config: sizes and switches.
        dim: width D of the text features (768 for CLIP ViT-L/14).

    Raises:
        InputError: ``dim`` is not divisible by ``config.heads`` or is smaller than the rank.
    """

    def __init__(self, config: CPAdapterConfig, *, dim: int) -> None:
        super().__init__()
        attends = config.global_context or config.object_reasoning
        if attends and dim % config.heads:
            raise InputError(
                f"CP-adapter width {dim} is not divisible by heads={config.heads}; "
                "choose heads dividing the text width"
            )
        if config.domain_adjustment and config.rank > dim:
            raise InputError(f"CP-adapter rank={config.rank} exceeds the text width {dim}")
        self.config = config
        self.dim = dim
        self.context: ContextEncoder | None = None
        if config.global_context:
            hidden = max(1, round(dim * config.ffn_ratio))
            self.context = ContextEncoder(
                dim, config.heads, config.context_layers, hidden, identity_init=config.identity_init
            )
        self.reasoning: ObjectReasoning | None = None
        if config.object_reasoning:
            hidden = max(1, round(dim * config.mlp_ratio))
            self.reasoning = ObjectReasoning(
                dim, config.heads, hidden, identity_init=config.identity_init
            )
        self.adjustment: LowRankAdjustment | None = None
        if config.domain_adjustment:
            self.adjustment = LowRankAdjustment(dim, config.rank)
        self.fusion_logit = nn.Parameter(torch.tensor(float(config.fusion_logit_init)))

    @property
    def alpha(self) -> Tensor:
        """The fusion weight α = sigmoid(logit) in (0, 1), a 0-d tensor (for logging)."""
        return torch.sigmoid(self.fusion_logit)

    def forward(self, text: Tensor, mask: Tensor) -> Tensor:
        """Refine text features.

        Args:
            text: (B, L, D) float, F_l (CLIP ``last_hidden_state``).
            mask: (B, L) bool, True = real token, False = padding. Padding is never attended to,
                so the outputs at real tokens do not depend on the values at padded positions;
                padded positions still get refined outputs (the UNet attends to all L positions).

        Returns:
            (B, L, D) float, F_r, same dtype as ``text`` outside autocast.

        Raises:
            InputError: the shapes do not match or a sequence has no real token.
        """
        if text.dim() != 3 or text.shape[-1] != self.dim or mask.shape != text.shape[:2]:
            raise InputError(
                f"CP-adapter expects text (B, L, {self.dim}) and mask (B, L); got text "
                f"{tuple(text.shape)} and mask {tuple(mask.shape)}"
            )
        mask = mask.to(torch.bool)
        if not bool(mask.any(dim=1).all()):
            raise InputError(
                "CP-adapter got a text mask with no real token in some sequence; "
                "pass the tokenizer's attention_mask (True/1 = real token)"
            )
        padding = ~mask
        features = text
        if self.context is not None:
            features = self.context(text, padding)  # F_g
        if self.reasoning is not None:
            features = self.reasoning(text, features, padding)  # F_e + MLP(F_e)
        if self.adjustment is not None:
            features = self.adjustment(features)
        # eq. 13 written as F_l + α (F_adj − F_l): the same value, but exactly F_l when
        # F_adj == F_l (no rounding from α·x + (1 − α)·x).
        alpha = torch.sigmoid(self.fusion_logit).to(features.dtype)
        return text + alpha * (features - text)
