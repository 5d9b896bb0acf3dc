"""The vector sink: stitched probability rows in, polygons of every prompt's mask out.

It takes the rows the stitcher emits (the same blended probabilities the raster sink encodes),
thresholds them exactly as :meth:`~diffris.geo.sinks.spec.OutputSpec.encode` does, polygonises
them band by band (:class:`~diffris.geo.vector.polygonize.StreamingPolygonizer`) and appends the
finished polygons to a working GeoPackage; on commit the output is completed in its format and
published like the rasters (temporary name, then one rename; see
:mod:`~diffris.geo.sinks.publish`).

Lifecycle::

    with VectorSink("buildings.gpkg", spec, model_id="runs/best") as sink:
        for row_off, probs, valid in stitched_rows:      # (P, rows, width) float32, NaN at nodata
            sink.write_rows(row_off, probs, valid)
    # published on a clean exit; nothing at the output if anything raised
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import shapely
from affine import Affine

from diffris.errors import InputError
from diffris.geo.sinks.publish import check_output, publish, remove_path, reserve_partial
from diffris.geo.sinks.spec import OutputSpec
from diffris.geo.vector.options import (
    EXTENSION_OF,
    VectorFormat,
    VectorOptions,
    require_vector_format,
)
from diffris.geo.vector.polygonize import MaskPolygon, StreamingPolygonizer
from diffris.geo.vector.writers import FeatureSpill, convert
from diffris.safe_paths import create_exclusive

__all__ = ["VectorSink", "check_vector_output"]

logger = logging.getLogger(__name__)


def check_vector_output(
    path: str | Path,
    spec: OutputSpec,
    options: VectorOptions,
    *,
    format: VectorFormat | str | None = None,
    overwrite: bool = False,
) -> VectorFormat:
    """Check, before any work, that ``path`` can take the polygons of ``spec``'s scene.

    Returns:
        The vector format.

    Raises:
        InputError: unknown format, a GCP-only scene, or ``--min-area`` in metres without a
            metric CRS.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputNotWritableError: its folder cannot be written.
    """
    fmt = require_vector_format(path, format)
    if spec.gcps is not None:
        raise InputError(
            f"cannot write {path}: the scene is georeferenced by GCPs only, so its polygons "
            "have no map coordinates; warp the scene first (gdalwarp -t_srs EPSG:<code> "
            "scene.tif warped.tif)"
        )
    options.min_pixels(_pixel_area(spec.transform), spec.crs)
    check_output(path, overwrite)
    return fmt


class VectorSink:
    """Polygons of each prompt's mask, written to a GeoPackage, GeoParquet, GeoJSON or FlatGeobuf.

    Args:
        path: the output file.
        spec: the scene's size, georeferencing, prompts and thresholds (the raster's spec).
        options: minimum area, simplification, holes.
        model_id: recorded in every polygon's ``model`` attribute.
        format: overrides the format implied by the extension.
        overwrite: replace an existing output when committing.
    """

    def __init__(
        self,
        path: str | Path,
        spec: OutputSpec,
        options: VectorOptions,
        *,
        model_id: str,
        format: VectorFormat | str | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.spec = spec
        self.options = options
        self.model_id = model_id
        self.overwrite = overwrite
        self.format = check_vector_output(path, spec, options, format=format, overwrite=overwrite)
        self._min_pixels = options.min_pixels(_pixel_area(spec.transform), spec.crs)
        self._thresholds = np.asarray(spec.thresholds(), dtype=np.float32)
        self._polygonizers = [
            StreamingPolygonizer(spec.width, holes=options.holes) for _ in spec.prompts
        ]
        self._partial: Path | None = None
        self._spill: FeatureSpill | None = None
        self._spill_path: Path | None = None
        self._target: Path | None = None
        self._next_row = 0
        self._state = "new"

    @property
    def features(self) -> int:
        """Polygons written so far."""
        return self._spill.count if self._spill is not None else 0

    def open(self) -> Self:
        """Check the output and create the temporary files (``__enter__`` calls this)."""
        if self._state != "new":
            raise RuntimeError(f"vector sink for {self.path} is {self._state}; open it once")
        check_output(self.path, self.overwrite)
        self._partial = reserve_partial(self.path)
        self._state = "open"
        try:
            # The working GeoPackage (a .gpkg name, as GDAL wants) sits under a temporary name
            # too; a GeoPackage output is that file itself, renamed into place on commit.
            self._spill_path = self._partial.with_name(self._partial.name + ".gpkg")
            create_exclusive(self._spill_path)
            if self.format is not VectorFormat.GPKG:
                # GDAL picks a layout from the extension (FlatGeobuf makes a folder of a name
                # without .fgb): the converted file gets its format's ending too.
                self._target = self._partial.with_name(
                    self._partial.name + EXTENSION_OF[self.format]
                )
                create_exclusive(self._target)
            layers = [p.id for p in self.spec.prompts]
            self._spill = FeatureSpill(self._spill_path, layers, self.spec.crs)
        except BaseException:
            self.abort()
            raise
        return self

    def write_rows(self, row_off: int, probs: np.ndarray, valid: np.ndarray) -> None:
        """Polygonise the next rows.

        Args:
            row_off: index of the rows' first row (in the output); the row after the last.
            probs: (P, rows, width) float probabilities (anything at nodata).
            valid: (rows, width) bool, False at nodata.
        """
        if self._state != "open":
            raise RuntimeError(f"vector sink for {self.path} is {self._state}; open it first")
        if row_off != self._next_row:
            raise ValueError(f"rows must arrive in order: expected {self._next_row}, got {row_off}")
        valid = np.asarray(valid, dtype=bool)
        for index, polygonizer in enumerate(self._polygonizers):
            prob = probs[index]
            with np.errstate(invalid="ignore"):
                mask = (prob >= self._thresholds[index]) & valid
            for polygon in polygonizer.add(row_off, mask, prob, valid):
                self._write(index, polygon)
        self._next_row += len(valid)

    def commit(self) -> None:
        """Finish the polygons still open, complete the file and rename it into place.

        Raises:
            RuntimeError: not every row was written (nothing is published).
            OutputExistsError: the output appeared meanwhile and ``overwrite`` is False.
        """
        if self._state == "committed":
            return
        if self._state != "open":
            raise RuntimeError(f"vector sink for {self.path} is {self._state}; open it first")
        if self._next_row != self.spec.height:
            self.abort()
            raise RuntimeError(
                f"{self.path} is incomplete: {self._next_row} of {self.spec.height} rows "
                "polygonised; nothing was published"
            )
        assert self._spill is not None and self._partial is not None
        try:
            for index, polygonizer in enumerate(self._polygonizers):
                for polygon in polygonizer.close():
                    self._write(index, polygon)
            self._spill.flush()
            if self.format is VectorFormat.GPKG:
                publish(self._spill.path, self.path, overwrite=self.overwrite)
            else:
                assert self._target is not None
                convert(self._spill, self._target, self.format, layer=self.path.stem)
                publish(self._target, self.path, overwrite=self.overwrite)
        except BaseException:
            self.abort()
            raise
        self._remove_work()
        self._state = "committed"
        logger.info("%s: %d polygons", self.path, self._spill.count)

    def abort(self) -> None:
        """Drop the temporary files; the output path is left as it was."""
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        self._remove_work()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.commit()

    def _write(self, index: int, polygon: MaskPolygon) -> None:
        if polygon.pixels < self._min_pixels:
            return
        assert self._spill is not None
        geometry = _to_map(polygon.geometry, self.spec.transform)
        if self.options.simplify > 0:
            geometry = shapely.simplify(geometry, self.options.simplify, preserve_topology=True)
        prompt = self.spec.prompts[index]
        values = (
            prompt.id,
            prompt.text,
            float(geometry.area),
            polygon.pixels,
            polygon.prob_mean,
            polygon.prob_max,
            self.model_id,
        )
        self._spill.add(prompt.id, geometry, values)

    def _remove_work(self) -> None:
        # The bare temporary name only reserves the others; the published one is gone already.
        for path in (self._partial, self._target):
            if path is not None:
                remove_path(path)
        if self._spill_path is not None:
            for suffix in ("", "-journal", "-wal", "-shm"):
                remove_path(self._spill_path.with_name(self._spill_path.name + suffix))


def _pixel_area(transform: Affine) -> float:
    return abs(transform.determinant)


def _to_map(geometry: shapely.Polygon, transform: Affine) -> shapely.Polygon:
    """Pixel coordinates (column, row) to the CRS, with the scene's affine transform."""
    a, b, c, d, e, f = transform[:6]
    matrix = np.array([[a, d], [b, e]])
    offset = np.array([c, f])
    return shapely.transform(geometry, lambda xy: xy @ matrix + offset)
