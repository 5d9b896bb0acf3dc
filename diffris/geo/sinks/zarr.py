"""Zarr (v3) output: one (prompt, y, x) array, CF and GeoZarr georeferencing, consolidated.

Layout of the store (a directory)::

    <store>/                 group attrs: spec.tags, output_type, prompts [{id,text,threshold}],
                             proj: convention (when there is a CRS)
      mask | prob            (prompt, y, x) uint8/float32, chunks (1, block, block),
                             fill_value = nodata; attrs grid_mapping="spatial_ref",
                             coordinates="prompt_text spatial_ref", _FillValue (xarray's encoding),
                             scale_factor/add_offset for uint8 probabilities, proj: and spatial:
                             conventions with their zarr_conventions registration
      x, y                   (x,) / (y,) float64 pixel-centre coordinates from the transform
      prompt                 (prompt,) prompt ids (the index); prompt_text: (prompt,) the texts
      spatial_ref            0-d CF grid mapping: crs_wkt, spatial_ref, GeoTransform (GDAL order),
                             grid_mapping_name and CF parameters when pyproj can derive them

``xarray.open_zarr(store)`` plus rioxarray then give the CRS (``ds.rio.crs``), the transform
(``ds[var].rio.transform()``), nodata masking and, for uint8 probabilities, decoded values.
The ``proj:``/``spatial:`` attributes follow the zarr-conventions ``proj`` and ``spatial``
conventions at their released tag ``v0.1`` and validate against its schemas (registration
objects below).

Dimension names are Zarr v3's ``dimension_names`` metadata (what xarray reads for v3 stores);
the v2-era ``_ARRAY_DIMENSIONS`` attribute is not written. GDAL's own Zarr driver in the GDAL
3.10 bundled with rasterio cannot read these stores (it rejects the v3 ``bytes`` codec).

``--co`` keys for Zarr: ``COMPRESS`` (ZSTD, the default; GZIP; BLOSC; NONE) and ``LEVEL``.
"""

from __future__ import annotations

import base64
import logging
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from diffris.errors import InputError
from diffris.geo.sinks.base import Sink
from diffris.geo.sinks.spec import OutputDtype, OutputFormat, OutputSpec, OutputType

__all__ = [
    "PROJ_CONVENTION",
    "SPATIAL_CONVENTION",
    "ZarrSink",
    "geozarr_attrs",
    "is_zarr_store",
    "zarr_codecs",
]

logger = logging.getLogger(__name__)

#: Registrations of the zarr-conventions ``proj`` and ``spatial`` conventions at their released
#: ``v0.1`` tags (tests/geo/test_zarr_conventions.py validates stores with zarr-cm).
PROJ_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/proj/refs/tags/v0.1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/proj/blob/v0.1/README.md",
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj",
    "description": "Coordinate reference system information for geospatial data",
}
SPATIAL_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v0.1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v0.1/README.md",
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial",
    "description": "Spatial coordinate information",
}
_COMPRESSORS = ("ZSTD", "GZIP", "BLOSC", "NONE")
#: Files at the root of a Zarr v3 (``zarr.json``) or v2 (``.zgroup``, ``.zarray``) store.
_STORE_MARKERS = ("zarr.json", ".zgroup", ".zarray")


class ZarrSink(Sink):
    """Writes a Zarr v3 store, one block-tall slab (one row of chunks) at a time."""

    format = OutputFormat.ZARR

    def __init__(self, path: str | Path, spec: OutputSpec, *, overwrite: bool = False) -> None:
        super().__init__(path, spec, overwrite=overwrite)
        self._codecs = zarr_codecs(spec.creation_options)  # validate before any work
        self._array: Any = None

    @property
    def variable(self) -> str:
        """Name of the data array: ``mask`` or ``prob``."""
        return self.spec.output_type.value

    def _create(self, partial: Path) -> None:
        import zarr

        spec = self.spec
        root = zarr.open_group(store=str(partial), mode="w-", zarr_format=3)
        root.attrs.update(_group_attrs(spec))
        self._array = root.create_array(
            self.variable,
            shape=(spec.count, spec.height, spec.width),
            chunks=(1, spec.block_size, spec.block_size),
            dtype=spec.numpy_dtype,
            fill_value=spec.nodata,
            dimension_names=("prompt", "y", "x"),
            attributes=_data_attrs(spec),
            **self._codecs,
        )
        x, y = pixel_centres(spec.transform, spec.width, spec.height)
        x_attrs, y_attrs = _axis_attrs(spec.crs)
        _write_1d(root, "x", x, x_attrs)
        _write_1d(root, "y", y, y_attrs)
        ids = np.array([p.id for p in spec.prompts], dtype=object)
        texts = np.array([p.text for p in spec.prompts], dtype=object)
        _write_1d(root, "prompt", ids, {"long_name": "prompt id"}, dim="prompt")
        _write_1d(root, "prompt_text", texts, {"long_name": "prompt text"}, dim="prompt")
        grid_mapping = root.create_array(
            "spatial_ref", shape=(), dtype="int64", fill_value=0, dimension_names=()
        )
        grid_mapping.attrs.update(grid_mapping_attrs(spec.crs, spec.transform))

    def _write_slab(self, row_off: int, slab: np.ndarray) -> None:
        self._array[:, row_off : row_off + slab.shape[1], :] = slab

    def _finish(self, partial: Path) -> None:
        import zarr

        self._array = None
        with warnings.catch_warnings():
            # zarr warns that consolidated metadata is not (yet) in the v3 spec; xarray reads it.
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            zarr.consolidate_metadata(str(partial))

    def _discard(self) -> None:
        self._array = None


def is_zarr_store(path: str | Path) -> bool:
    """Whether ``path`` names a Zarr store (one output), not a folder to write outputs into.

    A ``.zarr`` name is a store whether or not it exists (a shell's completion adds a trailing
    ``/`` to an existing one); so is an existing folder with Zarr metadata at its root.
    """
    path = Path(path)
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / name).is_file() for name in _STORE_MARKERS)


def zarr_codecs(options: dict[str, str] | Any) -> dict[str, Any]:
    """``create_array`` keyword arguments from ``--co`` (COMPRESS, LEVEL).

    Raises:
        InputError: an unknown key, compressor or level.
    """
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    unknown = sorted(set(options) - {"COMPRESS", "LEVEL"})
    if unknown:
        raise InputError(
            f"--co {unknown[0]} is not a Zarr option; valid: COMPRESS ({', '.join(_COMPRESSORS)}), "
            "LEVEL"
        )
    name = options.get("COMPRESS", "ZSTD").upper()
    if name not in _COMPRESSORS:
        raise InputError(f"--co COMPRESS={name} is not one of {', '.join(_COMPRESSORS)}")
    level_text = options.get("LEVEL")
    try:
        level = None if level_text is None else int(level_text)
    except ValueError as err:
        raise InputError(f"--co LEVEL={level_text} is not an integer; use e.g. 3") from err
    if name == "NONE":
        return {"compressors": None}
    if name == "GZIP":
        codec: Any = GzipCodec(level=5 if level is None else level)
    elif name == "BLOSC":
        codec = BloscCodec(cname="zstd", clevel=5 if level is None else level)
    else:
        codec = ZstdCodec(level=3 if level is None else level)
    return {"compressors": [codec]}


def pixel_centres(transform: Affine, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(width,) x and (height,) y coordinates of pixel centres along the first row / column.

    Exact for north-up and rectilinear transforms; for rotated ones they are indicative and the
    ``GeoTransform`` / ``spatial:transform`` attributes are authoritative.
    """
    cols = np.arange(width, dtype=np.float64) + 0.5
    rows = np.arange(height, dtype=np.float64) + 0.5
    return transform.c + transform.a * cols, transform.f + transform.e * rows


def grid_mapping_attrs(crs: CRS | None, transform: Affine) -> dict[str, Any]:
    """Attributes of the CF ``spatial_ref`` variable (as GDAL and rioxarray write them)."""
    attrs: dict[str, Any] = {}
    if crs is not None:
        wkt = crs.to_wkt()
        try:
            import pyproj

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pyproj warns for CRSs without CF names
                attrs.update(pyproj.CRS.from_wkt(wkt).to_cf())
        except ImportError:
            attrs["crs_wkt"] = wkt
        attrs["spatial_ref"] = wkt
    attrs["GeoTransform"] = " ".join(repr(float(v)) for v in transform.to_gdal())
    return attrs


def geozarr_attrs(crs: CRS | None, transform: Affine, width: int, height: int) -> dict[str, Any]:
    """``proj:`` (when there is a CRS) and ``spatial:`` convention attributes of the data array."""
    attrs = _proj_attrs(crs)
    corners = [transform @ (col, row) for col in (0, width) for row in (0, height)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    attrs["zarr_conventions"] = [*attrs.get("zarr_conventions", []), SPATIAL_CONVENTION]
    attrs.update(
        {
            "spatial:dimensions": ["y", "x"],
            "spatial:transform_type": "affine",
            "spatial:transform": [float(v) for v in tuple(transform)[:6]],
            "spatial:shape": [height, width],
            "spatial:bbox": [min(xs), min(ys), max(xs), max(ys)],
            "spatial:registration": "pixel",
        }
    )
    return attrs


def _proj_attrs(crs: CRS | None) -> dict[str, Any]:
    if crs is None:
        return {}
    attrs: dict[str, Any] = {"zarr_conventions": [PROJ_CONVENTION]}
    authority = crs.to_authority()
    if authority is not None and authority[1].isdigit():
        attrs["proj:code"] = f"{authority[0].upper()}:{authority[1]}"
    attrs["proj:wkt2"] = crs.to_wkt(version="WKT2_2019")
    return attrs


def _group_attrs(spec: OutputSpec) -> dict[str, Any]:
    prompts = [
        {"id": p.id, "text": p.text, "threshold": t}
        for p, t in zip(spec.prompts, spec.thresholds(), strict=True)
    ]
    return {"output_type": spec.output_type.value, **spec.tags, "prompts": prompts} | _proj_attrs(
        spec.crs
    )


def _data_attrs(spec: OutputSpec) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "grid_mapping": "spatial_ref",
        "coordinates": "prompt_text spatial_ref",
        "_FillValue": _xarray_fill_value(spec),
    }
    if spec.output_type is OutputType.MASK:
        attrs |= {
            "long_name": "referring segmentation mask",
            "flag_values": [0, 1],
            "flag_meanings": "outside inside",
        }
    else:
        attrs["long_name"] = "referring segmentation probability"
        if spec.scale is not None:
            attrs |= {"scale_factor": spec.scale, "add_offset": 0.0}
    return attrs | geozarr_attrs(spec.crs, spec.transform, spec.width, spec.height)


def _xarray_fill_value(spec: OutputSpec) -> Any:
    """``_FillValue`` as xarray encodes it for Zarr v3 (floats as base64 little-endian doubles)."""
    assert spec.nodata is not None
    if spec.dtype is OutputDtype.FLOAT32:
        return base64.standard_b64encode(struct.pack("<d", float(spec.nodata))).decode()
    return int(spec.nodata)


def _axis_attrs(crs: CRS | None) -> tuple[dict[str, Any], dict[str, Any]]:
    if crs is None:
        return {"long_name": "x coordinate", "axis": "X"}, {
            "long_name": "y coordinate",
            "axis": "Y",
        }
    if crs.is_geographic:
        return (
            {"standard_name": "longitude", "units": "degrees_east", "axis": "X"},
            {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"},
        )
    units = {"metre": "m", "meter": "m"}.get(crs.linear_units, crs.linear_units)
    return (
        {"standard_name": "projection_x_coordinate", "units": units, "axis": "X"},
        {"standard_name": "projection_y_coordinate", "units": units, "axis": "Y"},
    )


def _write_1d(
    root: Any, name: str, values: np.ndarray, attrs: dict[str, Any], dim: str | None = None
) -> None:
    dtype: Any = str if values.dtype == object else values.dtype
    array = root.create_array(
        name,
        shape=values.shape,
        dtype=dtype,
        dimension_names=(dim or name,),
        attributes=attrs,
    )
    array[:] = values
