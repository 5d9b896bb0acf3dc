"""Encodings of stitched probabilities for the sinks: binary masks and 8-bit probabilities.

Both 8-bit encodings keep nodata in the same band, so a plain GeoTIFF ``nodata=255`` (or a Zarr
``fill_value``) describes them and no separate mask band is needed:

- **mask**: uint8, ``1`` where the probability is at or above the prompt's threshold, ``0`` below,
  :data:`MASK_NODATA` (255) where the scene had no data.
- **prob8**: uint8, ``round(p * 254)`` in 0..254, :data:`PROB_NODATA` (255) for nodata;
  :func:`uint8_to_probs` inverts it (``p = v / 254``, within 1/508).
- **float**: the stitcher's float32 probabilities as they are, NaN for nodata.

Thresholding happens once, here, on the blended and normalised probabilities; never per tile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffris.errors import InputError

__all__ = [
    "MASK_NODATA",
    "PROB_NODATA",
    "PROB_SCALE",
    "check_thresholds",
    "probs_to_uint8",
    "threshold_rows",
    "uint8_to_probs",
]

#: Nodata value of uint8 mask outputs (valid values are 0 and 1).
MASK_NODATA = 255
#: Nodata value of uint8 probability outputs (valid values are 0..254).
PROB_NODATA = 255
#: uint8 probability code of p = 1.0.
PROB_SCALE = 254


def check_thresholds(thresholds: Sequence[float], n_prompts: int) -> tuple[float, ...]:
    """Validate per-prompt thresholds; a single value applies to every prompt.

    Args:
        thresholds: one value, or one per prompt, each in [0, 1].
        n_prompts: number of prompts P.

    Returns:
        P thresholds.

    Raises:
        InputError: a value outside [0, 1] or a count that is neither 1 nor P.
    """
    values = tuple(float(t) for t in thresholds)
    if len(values) not in (1, n_prompts):
        raise InputError(
            f"got {len(values)} thresholds for {n_prompts} prompts; "
            "give one --threshold for all prompts or one per prompt"
        )
    for value in values:
        if not 0.0 <= value <= 1.0:
            raise InputError(f"--threshold {value:g} is not in [0, 1]; use e.g. 0.5")
    return values * n_prompts if len(values) == 1 else values


def threshold_rows(probs: np.ndarray, valid: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Binary masks from normalised probabilities.

    Args:
        probs: (P, rows, width) float probabilities in [0, 1] (NaN allowed where not valid).
        valid: (rows, width) bool, False for nodata.
        thresholds: one per prompt, or one for all; a pixel is 1 when ``p >= threshold``
            (the convention of :mod:`diffris.geo.sinks.spec`).

    Returns:
        (P, rows, width) uint8: 0/1, :data:`MASK_NODATA` where not valid.
    """
    values = np.asarray(check_thresholds(thresholds, probs.shape[0]), dtype=np.float32)
    with np.errstate(invalid="ignore"):
        masks = (probs >= values[:, None, None]).astype(np.uint8)
    masks[:, ~valid] = MASK_NODATA
    return masks


def probs_to_uint8(probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """8-bit probabilities: ``round(p * 254)``, :data:`PROB_NODATA` where not valid.

    Args:
        probs: (P, rows, width) float probabilities in [0, 1] (NaN allowed where not valid).
        valid: (rows, width) bool.

    Returns:
        (P, rows, width) uint8 in 0..254, 255 for nodata.
    """
    clean = np.where(valid, np.clip(probs, 0.0, 1.0), 0.0)
    codes = np.rint(clean * PROB_SCALE).astype(np.uint8)
    codes[:, ~valid] = PROB_NODATA
    return codes


def uint8_to_probs(codes: np.ndarray) -> np.ndarray:
    """Invert :func:`probs_to_uint8`: (…) uint8 -> float32 in [0, 1], NaN for nodata."""
    probs = codes.astype(np.float32) / np.float32(PROB_SCALE)
    probs[codes == PROB_NODATA] = np.nan
    return probs
