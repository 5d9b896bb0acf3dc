"""A STAC Item beside each output (``--stac``): footprint, projection, bands, checksum, model.

Everything is read back from the written file, so the item describes what is on disk: the
geometry is the raster's footprint (its four corners) and the bbox its bounds, both in WGS84;
the ``proj`` extension holds the EPSG code (or WKT2), transform and shape; ``raster:bands`` the
nodata value, scale and data type of each band, with the band's prompt as its description; the
``file`` extension the size and SHA-256 (multihash) of the file. The item is written under a
temporary name and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diffris import __version__
from diffris.data.prompts import Prompt
from diffris.errors import InputError

__all__ = [
    "FILE_SCHEMA",
    "check_stac_outputs",
    "PROJ_SCHEMA",
    "RASTER_SCHEMA",
    "item_path",
    "output_item",
    "write_json_atomic",
    "write_output_item",
]

#: Extension schema URIs the items declare (the versions pystac writes).
PROJ_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_SCHEMA = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
#: multihash prefix of a SHA2-256 digest: code 0x12, length 0x20.
_SHA256_MULTIHASH = "1220"
_ASSET_KEY = "data"
_CHUNK = 1 << 20


def item_path(output: str | Path) -> Path:
    """Where the item of ``output`` goes: ``buildings.tif`` -> ``buildings.stac.json``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.stac.json")


def check_stac_outputs(outputs: Sequence[str | Path], zarr: bool = False) -> None:
    """Refuse ``--stac`` for Zarr outputs before any work (items describe GeoTIFF/COG files).

    Args:
        outputs: the run's outputs.
        zarr: the run writes Zarr (``--format zarr``).

    Raises:
        InputError: an output is a Zarr store.
    """
    from diffris.geo.sinks.zarr import is_zarr_store

    for output in outputs:
        if zarr or is_zarr_store(output):
            raise InputError(
                f"--stac describes GeoTIFF/COG outputs; {output} is a Zarr store: use --format "
                "gtiff or cog, or drop --stac"
            )


def output_item(
    output: str | Path,
    *,
    item_id: str,
    prompts: Sequence[Prompt],
    model_id: str,
    derived_from: str | None = None,
    datetime: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The STAC Item (a dict, as written) describing the GeoTIFF/COG ``output``.

    Args:
        output: the published raster.
        item_id: the item's id (the input item's id, else the output's stem).
        prompts: one per band, in band order.
        model_id: the model's identity (``diffris:model``).
        derived_from: the input STAC item's file; linked as ``derived_from``.
        datetime: the acquisition time (ISO 8601) from the input item; None: now.
        extra: more properties (e.g. the archive's job key).

    Raises:
        InputError: the output is a Zarr store, or has no CRS (STAC needs a WGS84 footprint).
    """
    import pystac
    import rasterio
    from rasterio.warp import transform_bounds, transform_geom

    path = Path(output)
    if path.is_dir():
        raise InputError(
            f"--stac describes GeoTIFF/COG outputs; {path} is a Zarr store: use --format gtiff "
            "or cog, or drop --stac"
        )
    with rasterio.open(path) as dataset:
        if dataset.crs is None:
            raise InputError(
                f"{path} has no CRS (a scene without georeferencing, or with GCPs only), so it "
                "has no footprint for a STAC item; drop --stac for this scene"
            )
        crs, bounds, transform = dataset.crs, dataset.bounds, dataset.transform
        shape = [dataset.height, dataset.width]
        bands = [
            _band(prompt, nodata, scale, offset, dtype)
            for prompt, nodata, scale, offset, dtype in zip(
                prompts,
                dataset.nodatavals,
                dataset.scales,
                dataset.offsets,
                dataset.dtypes,
                strict=True,
            )
        ]
        driver_tags = dataset.tags(ns="IMAGE_STRUCTURE")
    corners = [
        (bounds.left, bounds.top),
        (bounds.right, bounds.top),
        (bounds.right, bounds.bottom),
        (bounds.left, bounds.bottom),
        (bounds.left, bounds.top),
    ]
    footprint = {"type": "Polygon", "coordinates": [corners]}
    geometry = transform_geom(crs, "EPSG:4326", footprint)
    bbox = list(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))
    when = dt.datetime.fromisoformat(datetime) if datetime else dt.datetime.now(dt.UTC)
    texts = "; ".join(p.text for p in prompts)
    properties: dict[str, Any] = {
        "title": f"diffris: {texts}",
        "created": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "diffris:model": model_id,
        "diffris:version": __version__,
        "diffris:prompts": [{"id": p.id, "text": p.text} for p in prompts],
        **_projection(crs, transform, shape, bounds),
        **(extra or {}),
    }
    item = pystac.Item(
        id=item_id,
        geometry=_as_lists(geometry),
        bbox=bbox,
        datetime=when,
        properties=properties,
        stac_extensions=[PROJ_SCHEMA, RASTER_SCHEMA, FILE_SCHEMA],
    )
    cog = driver_tags.get("LAYOUT", "").upper() == "COG"
    item.add_asset(
        _ASSET_KEY,
        pystac.Asset(
            href=f"./{path.name}",
            media_type=pystac.MediaType.COG if cog else pystac.MediaType.GEOTIFF,
            title=texts,
            roles=["data"],
            extra_fields={
                "raster:bands": bands,
                "file:size": path.stat().st_size,
                "file:checksum": _SHA256_MULTIHASH + _sha256(path),
            },
        ),
    )
    if derived_from is not None:
        item.add_link(
            pystac.Link("derived_from", derived_from, media_type=pystac.MediaType.GEOJSON)
        )
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def write_output_item(output: str | Path, **fields: Any) -> Path:
    """Write :func:`output_item` of ``output`` to :func:`item_path` atomically.

    Args:
        output: the published raster.
        **fields: :func:`output_item`'s keyword arguments.

    Returns:
        The item's path.
    """
    path = item_path(output)
    item = output_item(output, **fields)
    if item["links"] and item["links"][0]["rel"] == "derived_from":
        item["links"][0]["href"] = _relative_href(item["links"][0]["href"], path.parent)
    write_json_atomic(path, item)
    return path


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write JSON to a temporary name beside ``path``, fsync it, rename it over ``path``."""
    from diffris.geo.sinks.publish import publish, reserve_partial

    partial = reserve_partial(path)
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        publish(partial, path, overwrite=True)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _band(
    prompt: Prompt, nodata: float | None, scale: float, offset: float, dtype: str
) -> dict[str, Any]:
    band: dict[str, Any] = {
        "name": prompt.id,
        "description": prompt.text,
        "data_type": dtype,
        "scale": scale,
        "offset": offset,
    }
    if nodata is not None:
        band["nodata"] = "nan" if nodata != nodata else nodata  # JSON has no NaN
    return band


def _projection(crs: Any, transform: Any, shape: list[int], bounds: Any) -> dict[str, Any]:
    epsg = crs.to_epsg()
    fields: dict[str, Any] = (
        {"proj:code": f"EPSG:{epsg}"}
        if epsg
        else {"proj:code": None, "proj:wkt2": crs.to_wkt(version="WKT2_2019")}
    )
    fields["proj:transform"] = list(transform)[:6]
    fields["proj:shape"] = shape
    fields["proj:bbox"] = list(bounds)
    return fields


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _as_lists(geometry: Any) -> dict[str, Any]:
    # rasterio returns tuples; JSON (and equality with a parsed item) wants lists
    return json.loads(json.dumps(dict(geometry)))


def _relative_href(href: str, folder: Path) -> str:
    """Relative when the input item and the output share a folder below the root (they move
    together); absolute otherwise (``../../data/...`` would break when either moves)."""
    if "://" in href:
        return href
    try:
        common = os.path.commonpath([os.path.abspath(href), os.path.abspath(folder)])
        if Path(common).parent == Path(common):  # only the root (or a drive) in common
            return href
        return Path(os.path.relpath(href, folder)).as_posix()
    except ValueError:  # another drive (Windows)
        return href
