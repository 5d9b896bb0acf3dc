"""Text as filters on SigLIP's image map: RSRefSeg's local and global activations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def text_filters(
    clip_map: Tensor,
    local: Tensor,
    pooled: Tensor,
    mask: Tensor,
    *,
    scale: Tensor,
    bias: Tensor,
    mask_padding: bool = False,
) -> tuple[Tensor, Tensor]:
    """Filter the SigLIP map with the sentence (RSRefSeg's "text as filters").

    With V, t and g L2-normalised along channels, s = ``scale`` (SigLIP's exp(logit_scale)) and
    b = ``bias``: local = (V + mean_j sigmoid(s⟨V, t_j⟩ + b) ⊙ V) / 2; global logits
    G = s⟨V, g⟩ + b and global = sigmoid(G) ⊙ V.

    Args:
        clip_map: (B, D, h, w) V, SigLIP vision's last hidden state on its grid.
        local: (B, L, D) t, the text tokens.
        pooled: (B, D) g, the pooled sentence.
        mask: (B, L) bool, True = real token.
        scale: SigLIP's exp(logit_scale) (a scalar tensor).
        bias: SigLIP's logit_bias (a scalar tensor).
        mask_padding: average the local activation over real tokens only (the authors count
            padding too).

    Returns:
        ``(features, global_logits)``: (B, 3D, h, w) [local, global, V] and (B, 1, h, w) G.
    """
    v = F.normalize(clip_map, dim=1)
    t = F.normalize(local.to(v.dtype), dim=-1)
    g = F.normalize(pooled.to(v.dtype), dim=-1)
    scale, bias = scale.to(v.dtype), bias.to(v.dtype)
    activation = torch.sigmoid(scale * torch.einsum("bdhw,bld->blhw", v, t) + bias)
    if mask_padding:
        weights = mask.to(v.dtype)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
        mean_activation = torch.einsum("blhw,bl->bhw", activation, weights).unsqueeze(1)
    else:
        mean_activation = activation.mean(dim=1, keepdim=True)
    local_feature = (v + mean_activation * v) / 2
    global_logits = (scale * torch.einsum("bdhw,bd->bhw", v, g) + bias).unsqueeze(1)
    global_feature = torch.sigmoid(global_logits) * v
    return torch.cat([local_feature, global_feature, v], dim=1), global_logits
