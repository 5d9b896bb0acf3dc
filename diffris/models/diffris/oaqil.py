"""The object-aware query interaction layer (OAQIL), the core of the PCMRD decoder.

Paper section 3.4, eqs. 14–20. Learnable query tokens first attend to the text (query–text
cross-attention), then group the visual vectors of a feature map: every visual vector is assigned
to one token by a Gumbel-normalised, straight-through hard assignment, and each token takes the
mean of the vectors assigned to it. Memory is O(HW·N) (a similarity per pixel and token), never
O(HW²).

The order of noise and temperature (a choice, :class:`GumbelOrder`): the equations were lost from
the paper's text, which calls τ "a learnable coefficient for adjusting the assignment boundary".
With A = softmax((S + G)/τ) the hard argmax does not depend on τ at all, and since S is a cosine
similarity in [-1, 1] while Gumbel(0, 1) noise has a standard deviation of 1.28, training-time
assignments would be close to uniformly random with no way to learn otherwise. With
A = softmax(S/τ + G) (the default) the argmax samples from softmax(S/τ), so a learnable τ does move
the boundary and the network controls how much the noise matters.
"""

from __future__ import annotations

import enum
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Lower bound of the temperature, as CLIP bounds its logit scale at 100.
MIN_TEMPERATURE = 0.01

#: Added to each token's assignment count before dividing (a token may get no visual vector).
COUNT_EPS = 1e-6


class GumbelOrder(enum.Enum):
    """Where the Gumbel noise enters relative to the temperature τ (training only)."""

    #: A = softmax(S/τ + G): τ sets how sharply the similarities beat the noise (default).
    TEMPERATURE_FIRST = "temperature_first"
    #: A = softmax((S + G)/τ): ``torch.nn.functional.gumbel_softmax``'s convention.
    NOISE_FIRST = "noise_first"


def gumbel_assign(
    similarity: Tensor,
    temperature: Tensor,
    *,
    hard: bool,
    noise: bool,
    order: GumbelOrder = GumbelOrder.TEMPERATURE_FIRST,
) -> Tensor:
    """Assign each visual vector to the tokens (eqs. 17–19).

    Args:
        similarity: (B, HW, N) cosine similarities S of visual vectors and tokens.
        temperature: 0-d positive tensor τ.
        hard: return the straight-through one-hot assignment Â instead of the soft A.
        noise: add Gumbel(0, 1) noise (training only; the caller decides).
        order: where the noise enters relative to τ.

    Returns:
        (B, HW, N) float32. Soft: A, rows summing to 1. Hard: forward value exactly
        one_hot(argmax A) (values exactly 0 or 1), gradient that of A (straight-through).
    """
    with torch.autocast(device_type=similarity.device.type, enabled=False):
        scores = similarity.float()
        tau = temperature.float()
        if noise:
            # Gumbel(0, 1) = -log(Exp(1)); the clamp keeps a (rare) exact zero from giving inf.
            exponential = torch.empty_like(scores).exponential_()
            gumbel = -exponential.clamp_min(torch.finfo(scores.dtype).tiny).log()
            if order is GumbelOrder.TEMPERATURE_FIRST:
                logits = scores / tau + gumbel
            else:
                logits = (scores + gumbel) / tau
        else:
            logits = scores / tau
        soft = logits.softmax(dim=-1)
        if not hard:
            return soft
        one_hot = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
        # hard + (A − stopgrad(A)): forward value exactly one-hot, gradient of A. The paper's
        # hard − stopgrad(A) + A is the same function but can round 1 − a + a away from 1.
        return one_hot + (soft - soft.detach())


def average_assigned(assignment: Tensor, values: Tensor) -> Tensor:
    """Each token's mean of the visual vectors assigned to it: normalised Âᵀ·V (eq. 20).

    Args:
        assignment: (B, HW, N) assignment Â (one-hot rows, or soft rows summing to 1).
        values: (B, HW, C) visual vectors.

    Returns:
        (B, N, C) float32; Σ_i Â_in v_i / (Σ_i Â_in + eps), zero for a token nothing is
        assigned to.
    """
    with torch.autocast(device_type=values.device.type, enabled=False):
        assignment = assignment.float()
        summed = assignment.transpose(1, 2) @ values.float()  # (B, N, C)
        counts = assignment.sum(dim=1).unsqueeze(-1)  # (B, N, 1)
        return summed / (counts + COUNT_EPS)


class OAQIL(nn.Module):
    """Query–text cross-attention, then Gumbel-normalised query–vision grouping.

    Post-norm blocks (a choice): tokens = LN(tokens + update) after each of the three steps, so
    the tokens passed from stage to stage stay on one scale.

    Args:
        dim: width C of tokens, text and visual vectors.
        heads: heads of the query–text cross-attention; must divide ``dim``.
        hard: hard (straight-through Gumbel) assignment; False = soft attention without noise
            (paper Table 6 row 3).
        temperature: initial τ (choice: 1.0, see ``PCMRDConfig.initial_temperature``;
            learnable, kept ≥ :data:`MIN_TEMPERATURE`).
        order: where the Gumbel noise enters relative to τ.
        mlp_ratio: hidden width of the token MLP as a multiple of ``dim``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        hard: bool = True,
        temperature: float = 1.0,
        order: GumbelOrder = GumbelOrder.TEMPERATURE_FIRST,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.hard = hard
        self.order = order
        # (1) query–text (eqs. 14–15)
        self.text_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_text = nn.LayerNorm(dim)
        # (2) query–vision grouping (eqs. 16–20): W_v and W_t into the common space
        self.norm_visual = nn.LayerNorm(dim)
        self.proj_visual = nn.Linear(dim, dim)
        self.proj_token = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm_group = nn.LayerNorm(dim)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        hidden = max(1, round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm_mlp = nn.LayerNorm(dim)

    @property
    def temperature(self) -> Tensor:
        """τ = exp(log τ), at least :data:`MIN_TEMPERATURE`; a 0-d tensor."""
        return self.log_temperature.clamp(min=math.log(MIN_TEMPERATURE)).exp()

    def attend_text(self, tokens: Tensor, text: Tensor, text_padding: Tensor) -> Tensor:
        """Language-enhanced tokens: (B, N, C) tokens, (B, L, C) text, (B, L) bool padding."""
        attended = self.text_attn(
            tokens, text, text, key_padding_mask=text_padding, need_weights=False
        )[0]
        return self.norm_text(tokens + attended)

    def similarity(self, visual: Tensor, tokens: Tensor) -> Tensor:
        """S = V̂·T̂ᵀ (eq. 16): (B, HW, C) normalised visual vectors, (B, N, C) tokens -> (B, HW, N).

        Projected by W_v, W_t, L2-normalised and multiplied in float32 (also under autocast).
        """
        projected_visual = self.proj_visual(visual)
        projected_tokens = self.proj_token(tokens)
        with torch.autocast(device_type=visual.device.type, enabled=False):
            v_hat = F.normalize(projected_visual.float(), dim=-1)
            t_hat = F.normalize(projected_tokens.float(), dim=-1)
            return v_hat @ t_hat.transpose(1, 2)

    def assign(self, similarity: Tensor) -> Tensor:
        """Â (B, HW, N) float32 from S; Gumbel noise only when training with hard assignment."""
        return gumbel_assign(
            similarity,
            self.temperature,
            hard=self.hard,
            noise=self.hard and self.training,
            order=self.order,
        )

    def forward(self, visual: Tensor, tokens: Tensor, text: Tensor, text_padding: Tensor) -> Tensor:
        """Update the tokens from the text and one visual map.

        Args:
            visual: (B, C, H, W) fused visual feature map.
            tokens: (B, N, C) query tokens.
            text: (B, L, C) text features (already projected to C).
            text_padding: (B, L) bool, True = padding (never attended to).

        Returns:
            (B, N, C) updated tokens.
        """
        tokens = self.attend_text(tokens, text, text_padding)
        vectors = self.norm_visual(visual.flatten(2).transpose(1, 2))  # (B, HW, C)
        assignment = self.assign(self.similarity(vectors, tokens))
        values = self.value(vectors)
        gathered = average_assigned(assignment, values)
        tokens = self.norm_group(tokens + self.out(gathered.to(values.dtype)))
        return self.norm_mlp(tokens + self.mlp(tokens))
