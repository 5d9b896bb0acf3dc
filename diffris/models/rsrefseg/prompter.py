"""RSRefSeg's prompter: the filtered SigLIP map -> SAM's sparse prompt tokens.

Called AttnPrompter in the paper, convolutional in the authors' code (followed here): a 1×1
convolution to SAM's prompt width with norm and GELU, plus SAM's random-Fourier positional
encoding on the grid, then stride-2 3×3 convolutions (27 -> 14 -> 7 for two) and a final 1×1
convolution; every position of the last map is one sparse token (49 for a 27×27 grid).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Groups of the prompter's GroupNorm (choice: 32, as common for 256 channels).
GROUPS = 32


def make_norm(kind: str, channels: int) -> nn.Module:
    """GroupNorm(32) (``group``, largest divisor of ``channels`` up to 32) or BatchNorm."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    groups = max(g for g in range(1, GROUPS + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def grid_positional_encoding(shared_embedding: nn.Module, height: int, width: int) -> Tensor:
    """SAM's positional encoding at the centres of a ``height`` × ``width`` grid.

    Args:
        shared_embedding: SAM's ``SamPositionalEmbedding`` (the prompt encoder's).

    Returns:
        (1, C, height, width), as ``SamModel.get_image_wide_positional_embeddings`` on a square.
    """
    weight = shared_embedding.positional_embedding
    ys = (torch.arange(height, device=weight.device, dtype=weight.dtype) + 0.5) / height
    xs = (torch.arange(width, device=weight.device, dtype=weight.dtype) + 0.5) / width
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
    return shared_embedding(grid.unsqueeze(0)).permute(0, 3, 1, 2)


class Prompter(nn.Module):
    """Filtered SigLIP features (B, 3D, h, w) -> (B, 1, N, C) sparse prompt tokens.

    Args:
        in_channels: 3D (the [local, global, V] concatenation).
        dim: SAM's prompt width C (256).
        down_spatial_times: stride-2 convolutions (2 gives 49 tokens on a 27×27 grid).
        norm: ``group`` or ``batch``.
    """

    def __init__(self, in_channels: int, dim: int, *, down_spatial_times: int, norm: str) -> None:
        super().__init__()
        self.dim = dim
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, dim, kernel_size=1), make_norm(norm, dim), nn.GELU()
        )
        self.down = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1),
                    make_norm(norm, dim),
                    nn.GELU(),
                )
                for _ in range(down_spatial_times)
            )
        )
        self.out = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, features: Tensor, positional: Tensor) -> Tensor:
        """Sparse tokens from the filtered map and SAM's (1, C, h, w) grid encoding."""
        hidden = self.stem(features) + positional.to(features.dtype)
        hidden = self.out(self.down(hidden))
        return hidden.flatten(2).transpose(1, 2).unsqueeze(1)
