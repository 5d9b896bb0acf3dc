"""Writing polygons: appended in batches to a GeoPackage (one layer per prompt), then streamed
into the requested format.

The GeoPackage is the working file: finished polygons are appended to it batch by batch
(``pyogrio.raw.write(append=True)``), so nothing grows with the scene but the file. A GeoPackage
output *is* that file; FlatGeobuf and GeoJSON are streamed from it through Arrow record batches
(``pyogrio.raw.write_arrow``), and GeoParquet with ``pyarrow.parquet`` (pyogrio's bundled GDAL
has no Parquet driver), the ``geo`` metadata written by hand after the GeoParquet 1.1 spec.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS

from diffris.geo.vector.options import VectorFormat

__all__ = ["FIELDS", "FeatureSpill", "convert"]

#: Attribute columns of every polygon, in order.
FIELDS = ("prompt", "prompt_text", "area", "pixels", "mean_prob", "max_prob", "model")
_DTYPES = (object, object, np.float64, np.int64, np.float64, np.float64, object)
_BATCH = 2048
_DRIVERS = {VectorFormat.FGB: "FlatGeobuf", VectorFormat.GEOJSON: "GeoJSON"}


class FeatureSpill:
    """Polygons appended to a GeoPackage, one layer per prompt, ``batch`` at a time.

    Args:
        path: the GeoPackage (an existing empty file is replaced).
        layers: layer names (prompt ids), created at once so that each exists even if empty.
        crs: CRS of the geometries, or None.
    """

    def __init__(self, path: Path, layers: Sequence[str], crs: CRS | None, *, batch: int = _BATCH):
        self.path = path
        self.layers = tuple(layers)
        self.crs_wkt = crs.to_wkt() if crs is not None else None
        self.batch = batch
        self._pending: dict[str, list[tuple[shapely.Polygon, tuple[Any, ...]]]] = {
            layer: [] for layer in self.layers
        }
        self.count = 0
        for i, layer in enumerate(self.layers):
            self._write(layer, [], append=i > 0)

    def add(self, layer: str, geometry: shapely.Polygon, values: tuple[Any, ...]) -> None:
        """Queue one polygon (CRS coordinates) with its :data:`FIELDS` values."""
        pending = self._pending[layer]
        pending.append((geometry, values))
        self.count += 1
        if len(pending) >= self.batch:
            self._write(layer, pending, append=True)
            pending.clear()

    def flush(self) -> None:
        """Write every queued polygon."""
        for layer, pending in self._pending.items():
            if pending:
                self._write(layer, pending, append=True)
                pending.clear()

    def _write(
        self, layer: str, rows: list[tuple[shapely.Polygon, tuple[Any, ...]]], *, append: bool
    ) -> None:
        from pyogrio.raw import write

        geometry = shapely.to_wkb(np.array([g for g, _ in rows], dtype=object))
        columns = [
            np.array([values[i] for _, values in rows], dtype=dtype)
            for i, dtype in enumerate(_DTYPES)
        ]
        write(
            str(self.path),
            geometry,
            columns,
            list(FIELDS),
            layer=layer,
            driver="GPKG",
            geometry_type="Polygon",
            crs=self.crs_wkt,
            append=append,
            encoding="UTF-8",
        )


def convert(spill: FeatureSpill, target: Path, fmt: VectorFormat, *, layer: str) -> None:
    """Stream every layer of ``spill`` into one ``target`` file of format ``fmt``.

    Args:
        layer: the output's layer name (FlatGeobuf, GeoJSON).
    """
    spill.flush()
    if fmt is VectorFormat.PARQUET:
        _write_geoparquet(spill, target)
        return
    import pyarrow as pa
    from pyogrio.raw import write_arrow

    schema, _ = _arrow_schema(spill)
    reader = pa.RecordBatchReader.from_batches(schema, _batches(spill))
    write_arrow(
        reader,
        str(target),
        layer=layer,
        driver=_DRIVERS[fmt],
        geometry_name=_GEOMETRY,
        geometry_type="Polygon",
        crs=spill.crs_wkt,
        encoding="UTF-8",
    )


_GEOMETRY = "geom"  # the GeoPackage driver's name for the geometry column


def _batches(spill: FeatureSpill) -> Iterator[Any]:
    from pyogrio.raw import open_arrow

    for name in spill.layers:
        with open_arrow(str(spill.path), layer=name, use_pyarrow=True) as (_, reader):
            yield from reader


def _arrow_schema(spill: FeatureSpill) -> tuple[Any, str]:
    from pyogrio.raw import open_arrow

    with open_arrow(str(spill.path), layer=spill.layers[0], use_pyarrow=True) as (meta, reader):
        return reader.schema, meta["geometry_name"] or _GEOMETRY


def _write_geoparquet(spill: FeatureSpill, target: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyogrio

    source, geometry = _arrow_schema(spill)
    # A plain binary WKB column named "geometry", described by the "geo" file metadata.
    fields = [pa.field(n, source.field(n).type) for n in FIELDS]
    schema = pa.schema([*fields, pa.field("geometry", pa.binary())])
    bounds = [pyogrio.read_info(str(spill.path), layer=n)["total_bounds"] for n in spill.layers]
    bounds = [b for b in bounds if b is not None and np.isfinite(b).all()]
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"],
        "crs": _projjson(spill.crs_wkt),
    }
    if bounds:
        box = np.array(bounds)
        column["bbox"] = [*box[:, :2].min(axis=0).tolist(), *box[:, 2:].max(axis=0).tolist()]
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}
    schema = schema.with_metadata({"geo": json.dumps(geo)})
    with pq.ParquetWriter(str(target), schema, compression="zstd") as writer:
        for batch in _batches(spill):
            arrays = [batch.column(n) for n in FIELDS]
            wkb = batch.column(geometry)
            if isinstance(wkb.type, pa.ExtensionType):
                wkb = wkb.storage
            writer.write_batch(pa.record_batch([*arrays, wkb.cast(pa.binary())], schema=schema))


def _projjson(wkt: str | None) -> dict[str, Any] | None:
    """The CRS as PROJJSON (GeoParquet's form); None for a scene without a CRS."""
    if wkt is None:
        return None
    return CRS.from_wkt(wkt).to_dict(projjson=True)
