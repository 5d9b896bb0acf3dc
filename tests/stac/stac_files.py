"""STAC documents on disk for the tests: items with relative hrefs, collections, catalogs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from tests.inference.scenes import CRS_UTM, TRANSFORM, position_scene

RGB = [
    {"name": "B04", "common_name": "red"},
    {"name": "B03", "common_name": "green"},
    {"name": "B02", "common_name": "blue"},
]


def item_dict(
    item_id: str,
    href: str,
    *,
    key: str = "visual",
    bands: list[dict[str, Any]] | None = None,
    extra_assets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A STAC 1.0 item whose asset ``key`` points at ``href`` (kept as given: may be relative)."""
    asset: dict[str, Any] = {"href": href, "type": "image/tiff; application=geotiff"}
    asset["roles"] = ["data"]
    if bands is not None:
        asset["eo:bands"] = bands
    box = [13.72, 45.14, 13.73, 45.15]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "id": item_id,
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [
                    [box[0], box[1]],
                    [box[2], box[1]],
                    [box[2], box[3]],
                    [box[0], box[3]],
                    [box[0], box[1]],
                ]
            ],
        },
        "bbox": box,
        "properties": {"datetime": "2024-06-01T10:30:00Z"},
        "links": [],
        "assets": {
            "thumbnail": {"href": "thumb.png", "type": "image/png", "roles": ["thumbnail"]},
            **(extra_assets or {}),
            key: asset,
        },
    }


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1))
    return path


def write_item(folder: Path, item_id: str, *, width: int = 300, height: int = 260) -> Path:
    """``folder/items/<id>.json`` whose visual asset is ``../images/<id>.tif`` (relative)."""
    position_scene(_mkdir(folder / "images") / f"{item_id}.tif", width, height)
    document = item_dict(item_id, f"../images/{item_id}.tif", bands=RGB)
    return write_json(folder / "items" / f"{item_id}.json", document)


def write_bgrn_scene(path: Path, width: int = 200, height: int = 150) -> Path:
    """A 4-band uint8 GeoTIFF (blue, green, red, nir) without colour interpretation."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 255, (4, height, width), dtype=np.uint8)
    profile = dict(driver="GTiff", width=width, height=height, count=4, dtype="uint8")
    with rasterio.open(
        path, "w", crs=CRS_UTM, transform=TRANSFORM, photometric="MINISBLACK", **profile
    ) as dst:
        dst.write(data)
    return path


def write_catalog(folder: Path, ids: list[str]) -> Path:
    """A static Catalog -> Collection -> Items tree (pystac layout, relative links); the items'
    assets are relative hrefs to ``folder/images/<id>.tif``. Returns ``catalog.json``."""
    import pystac

    images = _mkdir(folder / "images")
    catalog = pystac.Catalog(id="scenes", description="test scenes")
    collection = pystac.Collection(
        id="june",
        description="June",
        extent=pystac.Extent(
            pystac.SpatialExtent([[13.7, 45.1, 13.8, 45.2]]),
            pystac.TemporalExtent([[None, None]]),
        ),
    )
    catalog.add_child(collection)
    for item_id in ids:
        if not (images / f"{item_id}.tif").exists():  # a rewritten catalog keeps its scenes
            position_scene(images / f"{item_id}.tif", 200, 150)
        item = pystac.Item.from_dict(item_dict(item_id, "placeholder", bands=RGB))
        collection.add_item(item)
    catalog.normalize_hrefs(str(folder / "stac"))
    for item in catalog.get_items(recursive=True):
        target = images / f"{item.id}.tif"
        item.assets["visual"].href = os.path.relpath(target, Path(item.get_self_href()).parent)
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return folder / "stac" / "catalog.json"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
