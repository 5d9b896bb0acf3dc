"""Blend weights: positive everywhere, flat centre, ramps only towards neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from diffris.geo.blend import ramp, weight_window

INNER = {"top": False, "bottom": False, "left": False, "right": False}


def test_inner_tile_ramps_on_all_sides_and_is_flat_in_the_centre() -> None:
    w = weight_window(256, 256, 64, **INNER)
    assert w.dtype == np.float32 and w.shape == (256, 256)
    assert (w > 0).all() and w.max() == 1.0
    assert (w[64:192, 64:192] == 1.0).all()
    assert w[0, 128] < 0.01 and w[128, 0] < 0.01 and w[255, 128] < 0.01
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(w, w[::-1, ::-1])


def test_border_sides_keep_full_weight() -> None:
    w = weight_window(128, 192, 32, top=True, bottom=False, left=True, right=False)
    assert (w[0, :160] == 1.0).all() and (w[:96, 0] == 1.0).all()
    assert w[127, 50] < 0.01 and w[50, 191] < 0.01
    alone = weight_window(128, 128, 32, top=True, bottom=True, left=True, right=True)
    assert (alone == 1.0).all()


def test_ramp_is_separable_and_rises_monotonically() -> None:
    rows = ramp(128, 32, start=True, end=False)
    cols = ramp(256, 32, start=True, end=True)
    w = weight_window(128, 256, 32, top=False, bottom=True, left=False, right=False)
    np.testing.assert_allclose(w, np.outer(rows, cols), rtol=1e-6)
    assert (np.diff(rows[:32]) > 0).all() and (rows[32:] == 1).all()


@pytest.mark.parametrize("overlap", [1, 7, 32, 64])
def test_neighbouring_ramps_sum_to_one_over_the_overlap(overlap: int) -> None:
    falling = ramp(2 * overlap + 10, overlap, start=False, end=True)[-overlap:]
    rising = ramp(2 * overlap + 10, overlap, start=True, end=False)[:overlap]
    np.testing.assert_allclose(falling + rising, 1.0, atol=1e-12)
    assert (rising > 0).all()


def test_zero_overlap_is_flat_and_too_large_overlap_fails() -> None:
    assert (weight_window(64, 64, 0, **INNER) == 1.0).all()
    with pytest.raises(ValueError, match="overlap 40"):
        ramp(64, 40, start=True, end=True)
