"""What the data path, training, evaluation and the archive need from a referring model.

Every architecture (DiffRIS, RSRefSeg) implements :class:`ReferringModel`; nothing outside
``diffris.models`` asks which one it has. The three inference stages are the ones the tile
predictor caches: sentence features once per run (:meth:`ReferringModel.encode_text`), image
features once per tile (:meth:`ReferringModel.encode_image`), then one decode per
(tile, prompt) pair (:meth:`ReferringModel.decode`).

Conventions shared by every architecture:

- pixels enter as (B, 3, H, W) float32 in [-1, 1] (:func:`diffris.models.preprocessing.
  to_model_range`), H and W multiples of :attr:`ReferringModel.size_multiple`;
- logits leave as (B, 1, H, W) float32 at the input size; sigmoid gives the probability;
- image features are a tensor, or a tuple of tensors, batch first (:data:`ImageFeatures`);
  :func:`select_rows` and :func:`cat_rows` handle both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

#: One tile's (or a batch's) prompt-independent features: a tensor or a tuple of tensors whose
#: first dimension is the batch.
ImageFeatures = Any


class Tokens(Protocol):
    """Tokenised prompts: moved to a device, and flagged where a prompt was truncated."""

    truncated: list[bool]

    def __len__(self) -> int: ...

    def to(self, device: torch.device | str) -> Self: ...


class PromptFeatures(Protocol):
    """Encoded prompts, one row per prompt, that pair with image rows."""

    truncated: list[bool]

    def __len__(self) -> int: ...

    def index_select(self, index: Tensor) -> Self:
        """Rows ``index`` (1-D int64), e.g. to pair B tiles × P prompts in one batch."""
        ...

    def repeat(self, times: int) -> Self:
        """The whole batch ``times`` times: [a, b] -> [a, b, a, b] for 2."""
        ...

    def to(self, device: torch.device | str) -> Self: ...


class BackboneIdentity(Protocol):
    """Which frozen weights a model was built on; a trained model loads only onto the same."""

    preset: str
    fingerprint: str


class ModelConfig(Protocol):
    """The options of a model, saved in its folder's ``config.json``."""

    backbone: BackboneIdentity
    mask_threshold: float
    max_tokens: int

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class ReferringModel(Protocol):
    """A referring-segmentation model, as inference, training, evaluation and the archive see it.

    Attributes:
        architecture: the name recorded in a trained-model folder (``diffris``, ``rsrefseg``).
        config: every option, with the frozen backbone's identity (preset and fingerprint).
        image_features_frozen: True when :meth:`encode_image` has no trainable part, so that
            training may compute image features once and reuse them (DiffRIS's latent cache);
            False when they change as the model trains (RSRefSeg's LoRA on the encoders).
    """

    architecture: str
    config: ModelConfig
    image_features_frozen: bool
    training: bool

    @property
    def device(self) -> torch.device: ...

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this many pixels."""
        ...

    # -- the three stages -----------------------------------------------------------------------

    def preprocess(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 RGB (or float in [0, 255]) -> float32 in [-1, 1], size checked."""
        ...

    def tokenize(self, texts: Sequence[str]) -> Tokens: ...

    def encode_text(self, texts: Sequence[str] | Tokens) -> PromptFeatures:
        """Sentence features, differentiable where the text side has trainable parts."""
        ...

    def encode_image(self, pixels: Tensor) -> ImageFeatures:
        """Prompt-independent features of (B, 3, H, W) pixels in [-1, 1]."""
        ...

    def decode(self, image: ImageFeatures, text: PromptFeatures) -> Tensor:
        """(B, 1, H, W) logits for B (image, prompt) rows (or one prompt for every image)."""
        ...

    def forward(self, pixels: Tensor, texts: Sequence[str] | PromptFeatures) -> Tensor:
        """``decode(encode_image(pixels), encode_text(texts))``."""
        ...

    def __call__(self, pixels: Tensor, texts: Sequence[str] | PromptFeatures) -> Tensor: ...

    def postprocess(self, logits: Tensor, threshold: float | None = None) -> Tensor:
        """Binary masks: probability above ``threshold`` (default ``config.mask_threshold``)."""
        ...

    # -- training and saving --------------------------------------------------------------------

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Sub-modules that together hold every trainable parameter (DDP wraps these)."""
        ...

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...

    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def trainable_parameter_count(self) -> int: ...

    def frozen_parameter_count(self) -> int: ...

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Exactly the tensors a trained-model folder stores (trainable weights and buffers)."""
        ...

    def load_trainable_state_dict(self, state: dict[str, Tensor], *, source: str = "") -> None:
        """Load :meth:`trainable_state_dict` output; every mismatch named in one error."""
        ...

    # -- nn.Module ------------------------------------------------------------------------------

    def to(self, *args: Any, **kwargs: Any) -> Self: ...

    def train(self, mode: bool = True) -> Self:
        """Training mode for the trainable parts; frozen parts stay in eval mode."""
        ...

    def eval(self) -> Self: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


def select_rows(features: ImageFeatures, index: Tensor) -> ImageFeatures:
    """Rows ``index`` of image features (a tensor or a tuple of tensors)."""
    if isinstance(features, tuple):
        return tuple(part.index_select(0, index_on(part.device, index)) for part in features)
    return features.index_select(0, index_on(features.device, index))


def index_on(device: torch.device, index: Tensor) -> Tensor:
    """``index`` on ``device``; from the host without waiting for the device (a blocking
    host-to-device copy would wait for every kernel queued before it)."""
    return index.to(device, non_blocking=index.device.type == "cpu")


def cat_rows(chunks: Sequence[ImageFeatures]) -> ImageFeatures:
    """Image features of several batches, concatenated along the batch."""
    import torch

    if isinstance(chunks[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*chunks, strict=True))
    return torch.cat(list(chunks))


def first_rows(features: ImageFeatures, count: int) -> ImageFeatures:
    """The first ``count`` rows of image features."""
    if isinstance(features, tuple):
        return tuple(part[:count] for part in features)
    return features[:count]


def map_tensors(features: ImageFeatures, function: Any) -> ImageFeatures:
    """``function`` applied to each tensor of image features (``.float()``, ``.cpu()``, ...)."""
    if isinstance(features, tuple):
        return tuple(function(part) for part in features)
    return function(features)
