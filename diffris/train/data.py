"""The datasets a run trains and validates on, including synthetic folders of any layout."""

from __future__ import annotations

from pathlib import Path

from diffris.data.base import ReferringDataset, Transform, open_dataset
from diffris.data.synthetic.detect import synthetic_layout
from diffris.errors import DatasetNotFoundError

__all__ = ["dataset_name", "open_split", "synthetic_layout"]


def dataset_name(dataset: str, root: str | Path) -> str:
    """The loader for ``dataset`` at ``root``: itself, or the detected layout for synthetic."""
    return synthetic_layout(root) if dataset == "synthetic" else dataset


def open_split(
    dataset: str, root: str | Path, split: str, transforms: Transform | None = None
) -> ReferringDataset:
    """Open one split of a benchmark or synthetic folder.

    Raises:
        DatasetNotFoundError: the root does not hold the dataset's layout (the message names the
            first missing entry and the expected layout).
    """
    if not Path(root).is_dir():
        raise DatasetNotFoundError(
            f"--data-root {root} does not exist; give the folder of the {dataset} dataset"
        )
    return open_dataset(dataset_name(dataset, root), root, split, transforms)
