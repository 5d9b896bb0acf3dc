"""Mask resizing shared by the data transforms and the metrics (both must resize alike)."""

from __future__ import annotations

import numpy as np


def resize_mask_nearest(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a mask with nearest neighbour, sampling pixel centres (as PIL's NEAREST does).

    Output pixel ``j`` takes input pixel ``floor((j + 0.5) * in / out)``, computed exactly in
    integers; no new values can appear. This equals PIL's result (what the reference loaders
    use) except where ``(j + 0.5) * in / out`` is exactly an integer, at which PIL's floating
    point sometimes takes the pixel before (never when in / out is exact in binary, as for
    800 -> 512 or 1024 -> 512).

    Args:
        mask: (H, W) array of any dtype.
        size: S for S x S, or (height, width), in pixels.

    Returns:
        (height, width) array of ``mask``'s dtype.
    """
    height, width = (size, size) if isinstance(size, int) else size
    in_height, in_width = mask.shape[:2]
    rows = ((2 * np.arange(height) + 1) * in_height) // (2 * height)
    cols = ((2 * np.arange(width) + 1) * in_width) // (2 * width)
    return mask[rows[:, None], cols[None, :]]
