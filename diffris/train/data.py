"""The datasets a run trains and validates on, including synthetic folders of any layout."""

from __future__ import annotations

from pathlib import Path

from diffris.data.base import ReferringDataset, Transform, open_dataset
from diffris.errors import DatasetNotFoundError

#: Synthetic layouts, recognised by the first entry of the root that exists.
_SYNTHETIC_MARKERS = (
    ("img_rgb", "risbench"),
    ("rrsisd", "rrsisd"),
    ("masks", "refsegrs"),
)


def synthetic_layout(root: str | Path) -> str:
    """Which benchmark layout a folder written by ``write_dataset`` has.

    ``img_rgb/`` is RISBench, ``rrsisd/`` is RRSIS-D, ``images/`` + ``masks/`` is RefSegRS.

    Raises:
        DatasetNotFoundError: none of them is there.
    """
    folder = Path(root)
    for marker, layout in _SYNTHETIC_MARKERS:
        if (folder / marker).is_dir() and (layout != "refsegrs" or (folder / "images").is_dir()):
            return layout
    raise DatasetNotFoundError(
        f"no synthetic dataset under {folder}: expected img_rgb/ (RISBench layout), rrsisd/ "
        "(RRSIS-D) or images/ + masks/ (RefSegRS); write one with "
        "diffris.data.synthetic.write_dataset"
    )


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
