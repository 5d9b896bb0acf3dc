"""Encodings for the sinks: thresholded masks and 8-bit probabilities with nodata 255."""

from __future__ import annotations

import numpy as np
import pytest

from diffris.errors import InputError
from diffris.geo.encode import (
    MASK_NODATA,
    PROB_NODATA,
    probs_to_uint8,
    threshold_rows,
    uint8_to_probs,
)


def rows() -> tuple[np.ndarray, np.ndarray]:
    probs = np.array([[[0.1, 0.5, 0.9, np.nan]], [[0.3, 0.6, 0.2, np.nan]]], dtype=np.float32)
    valid = np.array([[True, True, True, False]])
    return probs, valid


def test_threshold_is_at_or_above_per_prompt_with_nodata_255() -> None:
    probs, valid = rows()
    masks = threshold_rows(probs, valid, [0.5, 0.25])
    assert masks.dtype == np.uint8
    np.testing.assert_array_equal(masks[0, 0], [0, 1, 1, MASK_NODATA])
    np.testing.assert_array_equal(masks[1, 0], [1, 1, 0, MASK_NODATA])
    shared = threshold_rows(probs, valid, [0.5])
    np.testing.assert_array_equal(shared[1, 0], [0, 1, 0, MASK_NODATA])


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [([1.5], r"--threshold 1.5 is not in \[0, 1\]"), ([0.5, 0.5, 0.5], "got 3 thresholds for 2")],
)
def test_bad_thresholds_are_input_errors(thresholds: list[float], message: str) -> None:
    probs, valid = rows()
    with pytest.raises(InputError, match=message):
        threshold_rows(probs, valid, thresholds)


def test_uint8_probabilities_round_trip_with_nodata_255() -> None:
    probs, valid = rows()
    codes = probs_to_uint8(probs, valid)
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes[0, 0], [25, 127, 229, PROB_NODATA])
    assert codes[:, valid].max() <= 254
    back = uint8_to_probs(codes)
    assert np.isnan(back[:, ~valid]).all()
    np.testing.assert_allclose(back[:, valid], probs[:, valid], atol=1 / 508 + 1e-7)
    ends = probs_to_uint8(np.array([[[0.0, 1.0]]]), np.array([[True, True]]))
    np.testing.assert_array_equal(ends[0, 0], [0, 254])
