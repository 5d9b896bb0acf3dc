"""A georeferenced scene read window by window as 8-bit RGB plus a valid-data mask.

Any raster GDAL reads (GeoTIFF, COG, JPEG2000, VRT, ...) is opened with rasterio. Three bands
are chosen (``bands``, else the colour interpretation, else the obvious 1- or 3-band case); a
single band is replicated to grey RGB. Data that is not uint8 is mapped to uint8 by one
**scene-level** linear stretch, computed once when the scene is opened and then applied to every
window identically, so the same pixel value gives the same output in every tile.

Choices:

- The stretch is **per band**: each of R, G, B gets its own low/high percentile (default 2-98 %),
  as QGIS's default "cumulative count cut" does. This removes per-band offsets such as haze in
  the blue band, giving imagery closer to the balanced 8-bit aerial photos the model was trained
  on. A manual ``stretch=(min, max)`` is shared by all bands.
- Statistics come from one decimated read with a long side of at most :data:`STATS_SIZE` px;
  GDAL serves it from overviews when the file has them (COG, JPEG2000 resolution levels),
  otherwise it samples the full-resolution raster without holding it in memory.
- A pixel is nodata if GDAL's mask says so (nodata value, alpha band or internal/.msk mask, with
  ``dataset_mask()`` semantics: a pixel is valid if any chosen band's mask is valid), or it is
  NaN/inf in float data, or any chosen band equals the ``nodata`` override. Nodata pixels are
  excluded from the statistics and come out as 0 in the image and False in ``valid``.

A :class:`Scene` wraps one rasterio dataset, which is not thread-safe: use a scene from one
thread only. :meth:`Scene.reopen` (or the picklable :attr:`Scene.spec`) gives another thread or
process its own handle with the same bands and stretch, without recomputing statistics.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from diffris.errors import InputError, InputNotFoundError, NotARasterError
from diffris.geo.coverage import Coverage
from diffris.geo.names import is_product, local_path, product_metadata
from diffris.geo.read_checks import check_vrt, read_error

__all__ = ["STATS_SIZE", "Scene", "SceneSpec", "Stretch", "StretchMethod", "gcp_georeferencing"]

logger = logging.getLogger(__name__)

#: Long side in pixels of the decimated read used for the stretch statistics.
STATS_SIZE = 1024


class StretchMethod(enum.Enum):
    """How source values become 8-bit."""

    #: uint8 data used as it is.
    NONE = "none"
    #: Per-band scene-level percentiles.
    PERCENTILE = "percentile"
    #: A user-given (min, max) shared by all bands.
    MANUAL = "manual"


@dataclass(frozen=True)
class Stretch:
    """The linear map from source values to uint8 for the three output bands.

    ``out = round(clip((value - low) / (high - low), 0, 1) * 255)`` per band (R, G, B).

    Attributes:
        method: where ``low``/``high`` came from.
        low: per output band, the source value mapped to 0.
        high: per output band, the source value mapped to 255.
        percentiles: the (low, high) percentiles used, for ``PERCENTILE``.
    """

    method: StretchMethod
    low: tuple[float, float, float] = (0.0, 0.0, 0.0)
    high: tuple[float, float, float] = (255.0, 255.0, 255.0)
    percentiles: tuple[float, float] | None = None

    @classmethod
    def manual(cls, low: float, high: float) -> Stretch:
        """A stretch from ``--stretch low,high`` shared by all bands; checks the values."""
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise InputError(
                f"--stretch {low:g},{high:g} is not a range; give min,max with min < max, "
                "e.g. --stretch 0,3000"
            )
        return cls(StretchMethod.MANUAL, (low,) * 3, (high,) * 3)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Map (3, h, w) source values to (3, h, w) uint8; NaN becomes 0."""
        if self.method is StretchMethod.NONE:
            return data.astype(np.uint8, copy=True)
        low = np.asarray(self.low, dtype=np.float64)[:, None, None]
        span = np.asarray(self.high, dtype=np.float64)[:, None, None] - low
        scaled = (data.astype(np.float64) - low) * (255.0 / np.maximum(span, 1e-12))
        return np.rint(np.nan_to_num(np.clip(scaled, 0.0, 255.0), nan=0.0)).astype(np.uint8)

    def to_tags(self) -> dict[str, str]:
        """Strings to record in output metadata, e.g. ``{"stretch_method": "percentile"}``."""
        tags = {"stretch_method": self.method.value}
        if self.method is not StretchMethod.NONE:
            tags["stretch_low"] = ",".join(f"{v:.6g}" for v in self.low)
            tags["stretch_high"] = ",".join(f"{v:.6g}" for v in self.high)
        if self.percentiles is not None:
            tags["stretch_percentiles"] = ",".join(f"{v:g}" for v in self.percentiles)
        return tags


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to open a scene again exactly as before; picklable.

    Attributes:
        path: the raster's path or GDAL URL.
        band_indexes: the chosen 1-based bands in R, G, B order.
        nodata: the nodata override, if any.
        stretch: the resolved stretch (statistics are not recomputed).
    """

    path: str
    band_indexes: tuple[int, int, int]
    nodata: float | None
    stretch: Stretch

    def open(self) -> Scene:
        """A new :class:`Scene` with its own dataset handle."""
        dataset = _open_dataset(self.path)
        try:
            _choose_bands(dataset, self.path, self.band_indexes)
        except BaseException:
            dataset.close()
            raise
        return Scene(dataset, self)


def gcp_georeferencing(dataset: Any) -> tuple[list[Any], Any] | None:
    """``(points, crs)`` when ``dataset`` is georeferenced by GCPs alone, else None.

    Args:
        dataset: an open rasterio dataset.
    """
    points, crs = dataset.gcps
    if not points or not dataset.transform.is_identity:
        return None
    return list(points), crs


def _log_georeferencing(dataset: Any, path: str) -> None:
    """One line when the outputs' georeferencing is not a plain CRS + geotransform."""
    gcps = gcp_georeferencing(dataset)
    if gcps is not None:
        points, crs = gcps
        logger.warning(
            "%s is georeferenced by %d GCPs (%s) and no geotransform; GeoTIFF/COG outputs carry "
            "the same GCPs on the scene's pixel grid (not warped: gdalwarp them for a map grid)",
            path,
            len(points),
            crs.to_string() if crs else "no CRS",
        )
    elif dataset.crs is None:
        logger.warning("%s has no CRS; outputs will share its pixel grid but carry no CRS", path)


class Scene:
    """A raster opened for window reads as uint8 RGB; build it with :meth:`open`.

    A scene holds one rasterio dataset and is for one thread; use :meth:`reopen` (or pass
    :attr:`spec` to another process and call ``spec.open()``) to read elsewhere. Use as a
    context manager or call :meth:`close`.

    Attributes:
        path: the raster's path or GDAL URL, as given.
        width: scene width in pixels.
        height: scene height in pixels.
        crs: the coordinate reference system, or None (a warning is logged at open).
        transform: the affine pixel-to-map transform (identity if the file has none).
        gcps: ``(points, crs)``, the ground control points of a scene georeferenced by GCPs
            only (no geotransform), else None; outputs carry them on the scene's pixel grid.
        dtype: the source data type of the chosen bands, e.g. ``"uint16"``.
        band_indexes: the chosen 1-based bands in R, G, B order (repeated for a grey scene).
        nodata: the nodata override, if any.
        stretch: the scene-level stretch applied to every window.
    """

    def __init__(self, dataset: Any, spec: SceneSpec) -> None:
        self._dataset = dataset
        self.spec = spec
        self.path = spec.path
        self.band_indexes = spec.band_indexes
        self.nodata = spec.nodata
        self.stretch = spec.stretch
        self.width: int = dataset.width
        self.height: int = dataset.height
        self.crs = dataset.crs
        self.transform = dataset.transform
        self.gcps = gcp_georeferencing(dataset)
        # Read each distinct band once, then index it into R, G, B.
        self._unique = tuple(sorted(set(self.band_indexes)))
        self._take = [self._unique.index(b) for b in self.band_indexes]
        self.dtype = str(np.result_type(*(dataset.dtypes[b - 1] for b in self._unique)))
        self._coverage: Coverage | None = None  # built at the first may_hold_data
        self._coverage_built = False
        if np.issubdtype(self.dtype, np.complexfloating):  # numpy's ComplexWarning is only debug
            logger.warning("%s has %s bands; diffris reads their real part", self.path, self.dtype)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        bands: Sequence[int] | None = None,
        nodata: float | None = None,
        stretch: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = (2.0, 98.0),
    ) -> Scene:
        """Open a raster and compute its scene-level stretch.

        Args:
            path: a file GDAL can read, or a GDAL URL (``/vsicurl/...``, ``s3://...``).
            bands: 1-based band numbers: three (R, G, B) or one (grey). Default: from the
                colour interpretation, or the only band, or the three bands.
            nodata: extra nodata value; pixels equal to it in any chosen band are nodata.
            stretch: manual (min, max) source values mapped to 0 and 255, for all bands.
            percentiles: (low, high) percentiles in [0, 100] of the per-band stretch, used
                unless the data is uint8 or ``stretch`` is given.

        Raises:
            InputNotFoundError: the file does not exist.
            NotARasterError: GDAL cannot read it as a raster.
            InputError: bad ``bands``, ``stretch`` or ``percentiles``, or bands that cannot be
                chosen without ``bands``.
        """
        path_str = os.fspath(path)
        low_pct, high_pct = (float(p) for p in percentiles)
        if not 0.0 <= low_pct < high_pct <= 100.0:
            raise InputError(
                f"--percentiles {low_pct:g},{high_pct:g} is not a range in [0, 100]; use e.g. 2,98"
            )
        manual = Stretch.manual(float(stretch[0]), float(stretch[1])) if stretch else None
        dataset = _open_dataset(path_str)
        try:
            band_indexes = _choose_bands(dataset, path_str, bands)
            _refuse_complex(dataset, path_str, band_indexes)
            _log_georeferencing(dataset, path_str)
            unique = sorted(set(band_indexes))
            if manual is not None:
                resolved = manual
            elif all(dataset.dtypes[b - 1] == "uint8" for b in unique):
                resolved = Stretch(StretchMethod.NONE)
            else:
                resolved = _percentile_stretch(
                    dataset, path_str, band_indexes, nodata, (low_pct, high_pct)
                )
        except BaseException:
            dataset.close()
            raise
        return cls(dataset, SceneSpec(path_str, band_indexes, nodata, resolved))

    def reopen(self) -> Scene:
        """A new scene on the same file with its own handle (for another thread)."""
        return self.spec.open()

    @property
    def profile(self) -> dict[str, Any]:
        """The georeferencing keys of a rasterio profile: width, height, crs, transform."""
        return {
            "width": self.width,
            "height": self.height,
            "crs": self.crs,
            "transform": self.transform,
        }

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return bool(self._dataset.closed)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Read one window as stretched RGB and its valid-data mask.

        Args:
            window: integer pixel window lying inside the scene.

        Returns:
            ``(image, valid)``: (3, h, w) uint8 RGB with 0 at nodata, and (h, w) bool, False
            for nodata.
        """
        window = self._check_window(window)
        try:
            data = self._dataset.read(self._unique, window=window)
            masks = self._dataset.read_masks(self._unique, window=window)
        except RasterioIOError as err:
            where = (
                f"window column {window.col_off}, row {window.row_off} "
                f"({window.width} x {window.height} px)"
            )
            raise read_error(self.path, where, err) from err
        valid = _valid_mask(data, masks, self.nodata)
        image = self.stretch.apply(data[self._take])
        image *= valid  # 0 at nodata (boolean-index assignment took ~5 ms a 512² tile)
        return image, valid

    def may_hold_data(self, window: Window) -> bool:
        """False only when GDAL's mask is nodata at every pixel of ``window``.

        Decided from the scene's mask, pooled once per band of rows (see
        :mod:`diffris.geo.coverage`), without reading the window's data; True does not
        promise a valid pixel (NaN and the ``nodata`` override need the data).

        Args:
            window: integer pixel window lying inside the scene.
        """
        window = self._check_window(window)
        if not self._coverage_built:
            self._coverage = Coverage.of(self._dataset, self._unique, self.path)
            self._coverage_built = True
        return self._coverage is None or self._coverage.may_hold_data(window)

    def close(self) -> None:
        """Close the dataset handle."""
        self._dataset.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Scene({self.path!r}, {self.width} x {self.height} px, bands={self.band_indexes}, "
            f"dtype={self.dtype}, crs={self.crs.to_string() if self.crs else None})"
        )

    def _check_window(self, window: Window) -> Window:
        values = (window.col_off, window.row_off, window.width, window.height)
        if any(v != int(v) for v in values):
            raise ValueError(f"window {window} is not on whole pixels")
        col, row, width, height = (int(v) for v in values)
        if width <= 0 or height <= 0 or col < 0 or row < 0:
            raise ValueError(f"window {window} is empty or starts outside the scene")
        if col + width > self.width or row + height > self.height:
            raise ValueError(f"window {window} extends past the {self.width} x {self.height} scene")
        return Window(col, row, width, height)


def _open_dataset(path: str) -> Any:
    """rasterio.open with diffris' errors; silences rasterio's not-georeferenced warning.

    A local file (or a subdataset's local file) that is missing is reported as such; any other
    name is handed to GDAL as given, and its refusal quoted. A Sentinel-2 ``X.SAFE`` folder
    opens by its ``MTD_*.xml``. A container with no bands of its own (a Sentinel-2
    ``MTD_MSIL2A.xml``, a GeoPackage of several tables) opens its one subdataset, Sentinel-2's
    10 m one, or is refused with the list of its subdatasets.
    """
    local = local_path(path)
    if local is not None and not Path(local).exists():
        inside = "" if local == path else f" (the file of {path})"
        raise InputNotFoundError(f"{local}{inside} does not exist; check the path")
    if local == path and is_product(path):
        path = product_metadata(path)  # a Sentinel-2 X.SAFE folder opens by its MTD_*.xml
    dataset = _rasterio_open(path)
    if dataset.driver == "VRT":
        try:
            check_vrt(dataset, path)
        except BaseException:
            dataset.close()
            raise
    if dataset.count or not dataset.subdatasets:
        return dataset
    try:
        chosen = _choose_subdataset(path, dataset.driver, list(dataset.subdatasets))
    finally:
        dataset.close()
    logger.info("%s holds subdatasets; reading %s", path, chosen)
    return _rasterio_open(chosen)


def _rasterio_open(path: str) -> Any:
    try:
        with warnings.catch_warnings():
            # Missing georeferencing is reported once, as a log line, by Scene.open.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as err:
        reason = " ".join(str(err).split())
        if local_path(path) is None:
            raise NotARasterError(
                f"GDAL cannot open {path}: {reason}; check the URL or name "
                "(gdalinfo opens the same names)"
            ) from err
        if "No such file" in reason:
            raise InputNotFoundError(f"{path} does not exist: {reason}") from err
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise NotARasterError(f"{path} is an empty file (0 bytes), not a raster") from err
        raise NotARasterError(f"{path} is not a raster GDAL can read: {reason}") from err


def _choose_subdataset(path: str, driver: str, subdatasets: list[str]) -> str:
    """The subdataset to read from a container without bands (see :func:`_open_dataset`)."""
    if len(subdatasets) == 1:
        return subdatasets[0]
    if driver == "SENTINEL2":
        # B4, B3, B2, B8 at 10 m, with red/green/blue colour interpretation: the RGB bands.
        ten_m = [name for name in subdatasets if ":10m:" in name]
        if ten_m:
            return ten_m[0]
    listed = ", ".join(subdatasets[:4]) + (", ..." if len(subdatasets) > 4 else "")
    raise InputError(
        f"{path} holds {len(subdatasets)} subdatasets and no bands of its own; pass one of "
        f"them instead, e.g. '{subdatasets[0]}' (it holds: {listed})"
    )


def _choose_bands(dataset: Any, path: str, bands: Sequence[int] | None) -> tuple[int, int, int]:
    """The 1-based (R, G, B) band numbers to read."""
    count = dataset.count
    example = "4,3,2" if count >= 4 else "1,2,3"
    if bands is not None:
        chosen = tuple(int(b) for b in bands)
        text = ",".join(str(b) for b in chosen)
        if len(chosen) not in (1, 3):
            raise InputError(
                f"--bands {text} has {len(chosen)} value(s); give three (red,green,blue), "
                f"e.g. --bands {example}, or one for a grey band"
            )
        for band in chosen:
            if not 1 <= band <= count:
                raise InputError(
                    f"--bands {text}: {path} has no band {band}; it has {count} band(s), "
                    f"numbered 1 to {count}"
                )
        return (chosen[0],) * 3 if len(chosen) == 1 else (chosen[0], chosen[1], chosen[2])
    interp = list(dataset.colorinterp)
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in interp for c in rgb):
        red, green, blue = (interp.index(c) + 1 for c in rgb)
        return red, green, blue
    content = [i + 1 for i, c in enumerate(interp) if c is not ColorInterp.alpha]
    if len(content) == 1:
        return (content[0],) * 3
    if len(content) == 3:
        return content[0], content[1], content[2]
    if count == 2:
        raise InputError(
            f"{path} has 2 bands; diffris reads 1 (grey) or 3 (red, green, blue); "
            "choose with --bands, e.g. --bands 1"
        )
    raise InputError(
        f"{path} has {count} bands and its colour interpretation does not say which are red, "
        f"green and blue; choose them with --bands, e.g. --bands {example}"
    )


def _refuse_complex(dataset: Any, path: str, band_indexes: tuple[int, int, int]) -> None:
    """Complex bands (SAR SLC) have no order to stretch; numpy would drop the imaginary part."""
    dtype = next(
        (dataset.dtypes[b - 1] for b in band_indexes if "complex" in dataset.dtypes[b - 1]), None
    )
    if dtype is not None:
        raise InputError(
            f"{path} holds {dtype} (complex) bands; diffris reads real-valued imagery: "
            "make an amplitude raster first (a VRT band with PixelFunctionType 'mod')"
        )


def _valid_mask(data: np.ndarray, masks: np.ndarray, nodata: float | None) -> np.ndarray:
    """(n, h, w) data and GDAL masks -> (h, w) bool valid (see the module docstring)."""
    valid = (masks != 0).any(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    if nodata is not None:
        valid &= ~(data == nodata).any(axis=0)
    return valid


def _percentile_stretch(
    dataset: Any,
    path: str,
    band_indexes: tuple[int, int, int],
    nodata: float | None,
    percentiles: tuple[float, float],
) -> Stretch:
    """Per-band percentiles of valid pixels in one decimated read of the chosen bands."""
    unique = sorted(set(band_indexes))
    long_side = max(dataset.width, dataset.height)
    factor = min(1.0, STATS_SIZE / long_side)
    shape = (max(1, round(dataset.height * factor)), max(1, round(dataset.width * factor)))
    overviews = dataset.overviews(unique[0])
    logger.debug(
        "%s: stretch statistics from a %d x %d read (overview factors %s)",
        path,
        shape[1],
        shape[0],
        overviews or "none",
    )
    out_shape = (len(unique), *shape)
    try:
        data = dataset.read(unique, out_shape=out_shape, resampling=Resampling.nearest)
        masks = dataset.read_masks(unique, out_shape=out_shape, resampling=Resampling.nearest)
    except RasterioIOError as err:
        where = f"its {shape[1]} x {shape[0]} px statistics sample (the whole scene, decimated)"
        raise read_error(path, where, err) from err
    valid = _valid_mask(data, masks, nodata)
    if not valid.any():
        logger.warning(
            "%s: no valid pixel in the %d x %d statistics sample; stretching the full %s range",
            path,
            shape[1],
            shape[0],
            data.dtype,
        )
        if np.issubdtype(data.dtype, np.integer):
            info = np.iinfo(data.dtype)
            bounds = {b: (float(info.min), float(info.max)) for b in unique}
        else:
            bounds = {b: (0.0, 1.0) for b in unique}
    else:
        bounds = {}
        for i, band in enumerate(unique):
            low, high = np.percentile(data[i][valid].astype(np.float64), percentiles)
            bounds[band] = (float(low), float(high))
            if high <= low:
                logger.warning("%s: band %d is constant (%g) in the sample", path, band, low)
    low3 = tuple(bounds[b][0] for b in band_indexes)
    high3 = tuple(bounds[b][1] for b in band_indexes)
    return Stretch(
        StretchMethod.PERCENTILE,
        (low3[0], low3[1], low3[2]),
        (high3[0], high3[1], high3[2]),
        percentiles,
    )
