"""GeoTIFF output: tiled, compressed, BigTIFF-safe, one band per prompt, written slab by slab.

Defaults (each overridable with ``--co KEY=VALUE``, passed to GDAL's GTiff driver as is):
``TILED=YES``, ``BLOCKXSIZE=BLOCKYSIZE=<block size>``, ``COMPRESS=DEFLATE``, ``PREDICTOR=2``
(3 for float32), ``BIGTIFF=IF_SAFER``, ``PHOTOMETRIC=MINISBLACK`` (bands are grey/undefined for
any number of prompts: never RGB, never alpha). Each band's description is its prompt text; its
tags carry ``prompt_id`` and ``threshold``; the dataset tags are ``spec.tags`` plus
``output_type``. uint8 probabilities get a band scale of 1/254 (see :mod:`diffris.geo.sinks.spec`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetWriter
from rasterio.windows import Window

from diffris.geo.sinks.base import Sink
from diffris.geo.sinks.gdal_options import probe_creation_options
from diffris.geo.sinks.spec import OutputDtype, OutputFormat, OutputSpec

__all__ = ["GeoTiffSink", "gtiff_options", "open_gtiff", "write_metadata"]

logger = logging.getLogger(__name__)


def gtiff_options(spec: OutputSpec, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """GTiff creation options: the defaults above, then ``overrides`` (upper-case keys)."""
    options = {
        "TILED": "YES",
        "BLOCKXSIZE": str(spec.block_size),
        "BLOCKYSIZE": str(spec.block_size),
        "COMPRESS": "DEFLATE",
        "PREDICTOR": "3" if spec.dtype is OutputDtype.FLOAT32 else "2",
        "BIGTIFF": "IF_SAFER",
        # Bands are prompts, not colours: GDAL would call 3 or 4 bands RGB(A), and a 4th
        # "alpha" band makes gdalwarp blank every other band wherever it is 0.
        "PHOTOMETRIC": "MINISBLACK",
    }
    options.update(overrides or {})
    return options


def open_gtiff(path: Path, spec: OutputSpec, options: dict[str, str]) -> DatasetWriter:
    """Create an empty GeoTIFF for ``spec`` at ``path`` with its metadata set.

    Args:
        path: file to create (any name; the driver is explicit).
        spec: size, georeferencing (CRS + transform, or GCPs), prompts, encoding.
        options: GTiff creation options (see :func:`gtiff_options`).
    """
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": spec.width,
        "height": spec.height,
        "count": spec.count,
        "dtype": spec.numpy_dtype.name,
        "crs": spec.crs,
        "transform": spec.transform,
        "nodata": spec.nodata,
    }
    if spec.gcps is not None:  # no geotransform: GDAL would write the identity one
        del profile["crs"], profile["transform"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # GCPs are set just below
        dataset = rasterio.open(path, "w", **profile, **options)
    try:
        if spec.gcps is not None:
            points, crs = spec.gcps
            dataset.gcps = (list(points), crs)
        write_metadata(dataset, spec)
    except BaseException:
        dataset.close()
        raise
    return dataset


def write_metadata(dataset: DatasetWriter, spec: OutputSpec) -> None:
    """Band descriptions (prompt texts), band tags, dataset tags and uint8 probability scales."""
    dataset.update_tags(**{"output_type": spec.output_type.value, **spec.tags})
    for band, (prompt, threshold) in enumerate(
        zip(spec.prompts, spec.thresholds(), strict=True), start=1
    ):
        dataset.set_band_description(band, prompt.text)
        dataset.update_tags(band, prompt_id=prompt.id, threshold=repr(threshold))
    if spec.scale is not None:
        dataset.scales = (spec.scale,) * spec.count
        dataset.offsets = (0.0,) * spec.count


class GeoTiffSink(Sink):
    """Writes a tiled GeoTIFF, one block-tall slab at a time (so each tile is written once)."""

    format = OutputFormat.GTIFF

    def __init__(self, path: str | Path, spec: OutputSpec, *, overwrite: bool = False) -> None:
        super().__init__(path, spec, overwrite=overwrite)
        self._dataset: DatasetWriter | None = None
        self._check_options()

    def _check_options(self) -> None:
        """Probe the ``--co`` options now, before any work (see :mod:`.gdal_options`)."""
        if self.spec.creation_options:
            probe_creation_options(
                "GTiff",
                gtiff_options(self.spec),
                self.spec.creation_options,
                self.spec.numpy_dtype.name,
            )

    def _create(self, partial: Path) -> None:
        options = gtiff_options(self.spec, dict(self.spec.creation_options))
        self._dataset = open_gtiff(partial, self.spec, options)

    def _write_slab(self, row_off: int, slab: np.ndarray) -> None:
        assert self._dataset is not None
        window = Window(0, row_off, self.spec.width, slab.shape[1])
        self._dataset.write(slab, window=window)

    def _finish(self, partial: Path) -> None:
        self._close()

    def _discard(self) -> None:
        try:
            self._close()
        except Exception as err:  # the file is deleted next; its close error is moot
            logger.debug("ignoring error while closing %s: %s", self.path, err)

    def _close(self) -> None:
        if self._dataset is not None:
            dataset, self._dataset = self._dataset, None
            dataset.close()
