"""Checks that a mask file reads as data bands, not a photo: the TIFF tags and a real GDAL warp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.vrt import WarpedVRT

from tests.geo.sink_helpers import read_ifds

PHOTOMETRIC_TAG, SAMPLES_TAG, EXTRA_SAMPLES_TAG = 262, 277, 338
MINISBLACK = 1
ASSOCIATED_ALPHA, UNASSOCIATED_ALPHA = 1, 2


def photometric_problems(path: Path) -> list[str]:
    """Why ``path`` is not written as plain data bands (empty when it is)."""
    problems = []
    _, _, ifds = read_ifds(path)
    for index, ifd in enumerate(ifds):
        photometric = ifd.tags.get(PHOTOMETRIC_TAG, [MINISBLACK])[0]
        if photometric != MINISBLACK:
            problems.append(f"IFD {index}: PhotometricInterpretation {photometric}")
        extra = ifd.tags.get(EXTRA_SAMPLES_TAG, [])
        alpha = {ASSOCIATED_ALPHA, UNASSOCIATED_ALPHA} & set(extra)
        samples = ifd.tags.get(SAMPLES_TAG, [1])[0]
        if photometric == MINISBLACK and samples != 1 + len(extra):  # libtiff would complain
            problems.append(f"IFD {index}: {samples} samples but {len(extra)} extra samples")
        if alpha:
            problems.append(f"IFD {index}: ExtraSamples declares alpha")
    with rasterio.open(path) as dataset:
        interp = dataset.colorinterp
    if any(c not in (ColorInterp.gray, ColorInterp.undefined) for c in interp):
        problems.append(f"colour interpretation {[c.name for c in interp]}")
    return problems


def warped_fractions(path: Path, crs: str = "EPSG:4326") -> list[float]:
    """Each band's share of 1-pixels kept by GDAL's warper (nearest) to ``crs``, relative to
    the source's; ~equal for every band unless the warper took a band for alpha."""
    with rasterio.open(path) as src:
        data = src.read()
        with WarpedVRT(src, crs=crs) as vrt:
            warped = vrt.read()
    kept = [(warped[b] == 1).sum() / max(1, (data[b] == 1).sum()) for b in range(len(data))]
    return [float(k) for k in kept]


def assert_bands_survive_warp(path: Path) -> None:
    """No band loses its 1-pixels in a warp (an alpha band would zero the others)."""
    fractions = warped_fractions(path)
    assert min(fractions) > 0.5, fractions
    assert max(fractions) / min(fractions) < 1.15, fractions
    assert np.all(np.isfinite(fractions))
