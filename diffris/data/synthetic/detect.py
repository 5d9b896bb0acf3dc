"""Recognise which benchmark layout a synthetic dataset folder was written in.

:func:`~diffris.data.synthetic.write_dataset` writes a benchmark's own layout, so the benchmark's
loader reads it; ``--dataset synthetic`` (``train`` and ``evaluate``) finds which one.
"""

from __future__ import annotations

import os
from pathlib import Path

from diffris.errors import DatasetNotFoundError

#: The dataset name that stands for "a synthetic folder, in whichever layout it was written".
SYNTHETIC = "synthetic"

#: Synthetic layouts, recognised by the first entry of the root that exists.
_MARKERS = (
    ("img_rgb", "risbench"),
    ("rrsisd", "rrsisd"),
    ("masks", "refsegrs"),
)


def synthetic_layout(root: str | os.PathLike[str]) -> str:
    """Which benchmark layout a folder written by ``write_dataset`` has.

    ``img_rgb/`` is RISBench, ``rrsisd/`` is RRSIS-D, ``images/`` + ``masks/`` is RefSegRS.

    Returns:
        The loader's registry name: ``risbench``, ``rrsisd`` or ``refsegrs``.

    Raises:
        DatasetNotFoundError: none of them is there.
    """
    folder = Path(root)
    for marker, layout in _MARKERS:
        if (folder / marker).is_dir() and (layout != "refsegrs" or (folder / "images").is_dir()):
            return layout
    raise DatasetNotFoundError(
        f"no synthetic dataset under {folder}: expected img_rgb/ (RISBench layout), rrsisd/ "
        "(RRSIS-D) or images/ + masks/ (RefSegRS); write one with diffris synth dataset "
        "(diffris.data.synthetic.write_dataset)"
    )
