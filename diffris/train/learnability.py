"""Does a trained model use the text? Score it with every sentence moved to another sample.

:class:`ShuffledSentences` pairs sample ``i``'s image and mask with the sentence of sample
``π(i)`` (a seeded derangement: no sample keeps its own sentence). A model that reads the text then
segments what the borrowed sentence names, and its scores against the true masks drop; a model
that ignores the text scores the same.
"""

from __future__ import annotations

from typing import Any

import torch

from diffris.data.base import ReferringDataset, SampleMeta
from diffris.devices import Precision
from diffris.eval.evaluate import evaluation_loader, score_model
from diffris.eval.metrics import Scores
from diffris.models.interface import ReferringModel


def derangement(size: int, seed: int) -> list[int]:
    """A seeded permutation of ``range(size)`` without fixed points (size ≥ 2)."""
    if size < 2:
        raise ValueError(f"cannot shuffle {size} sentence(s) between samples; need at least 2")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(size, generator=generator).tolist()
    return [order[(order.index(i) + 1) % size] for i in range(size)]  # a single cycle


class ShuffledSentences(torch.utils.data.Dataset[Any]):
    """``dataset`` with each sample's sentence taken from another sample.

    Args:
        dataset: a dataset with a ``ResizeToModel`` transform (its items are dicts).
        seed: seed of the derangement.
    """

    def __init__(self, dataset: ReferringDataset, seed: int = 0) -> None:
        self.dataset = dataset
        self.source = derangement(len(dataset), seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def meta(self, index: int) -> SampleMeta:
        """The metadata of the sample whose image and mask are used."""
        return self.dataset.meta(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        item["sentence"] = self.dataset.records[self.source[index]].sentence
        return item


def score_with_and_without_text(
    model: ReferringModel,
    dataset: ReferringDataset,
    *,
    batch_size: int = 8,
    precision: Precision = Precision.FP32,
    seed: int = 0,
) -> tuple[Scores, Scores]:
    """Scores with the true sentences, and with sentences shuffled between samples."""
    device = model.device
    true = score_model(
        model, evaluation_loader(dataset, batch_size=batch_size), device=device, precision=precision
    )
    shuffled_set = ShuffledSentences(dataset, seed)
    shuffled = score_model(
        model,
        evaluation_loader(shuffled_set, batch_size=batch_size),  # type: ignore[arg-type]
        device=device,
        precision=precision,
    )
    return true.result(), shuffled.result()
