"""A spatial context block on SAM's image embedding (a choice; ``context_layers`` 0 = the
authors' model, which has none).

SAM's mask decoder reads each embedding cell (8 px of a 512 px tile) with little of its
surroundings: with real SAM features that is enough, with the random frozen ``rsrefseg-tiny``
ones a pond and a river (one colour, different shapes) look alike. The block adds
x + project(body(x)): 3×3 conv-GN-GELU layers with dilations 1, 2, 4, ... (four layers see
31 cells, about 250 px), the projection zero-initialised so that the block starts as the
identity. It depends on the image alone, so it belongs to the once-per-tile image stage.
"""

from __future__ import annotations

from torch import Tensor, nn

from diffris.models.rsrefseg.prompter import make_norm


class ContextBlock(nn.Module):
    """Residual dilated-convolution context at the embedding's own resolution.

    Args:
        dim: channels of SAM's image embedding.
        layers: 3×3 layers, dilated 1, 2, 4, ... (at least 1).
    """

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Conv2d(dim, dim, kernel_size=3, padding=2**k, dilation=2**k),
                    make_norm("group", dim),
                    nn.GELU(),
                )
                for k in range(layers)
            )
        )
        self.project = nn.Conv2d(dim, dim, kernel_size=1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, embedding: Tensor) -> Tensor:
        """(B, C, h, w) -> the same shape, with context added."""
        return embedding + self.project(self.body(embedding)).to(embedding.dtype)
