"""Scenes from STAC: an Item, an ItemCollection, or a static Catalog/Collection on disk.

Each item gives one scene: one of its assets (``asset``; by default ``visual``, else the first
image asset whose bands are red, green and blue). The asset's ``eo:bands`` (STAC 1.0) or
``bands`` with ``eo:common_name`` (STAC 1.1) pick the 1-based R, G, B band numbers; an asset
without common names leaves the choice to the scene reader (colour interpretation, 1 or 3
bands). Relative hrefs are resolved against the item's own file (an item inside an
ItemCollection file: that file's folder); URLs are kept as given, for GDAL to read. The item's
id names the output.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from diffris.errors import InputError, InputNotFoundError

__all__ = ["StacScene", "is_stac_file", "read_stac"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_STAC_TYPES = {"Feature", "FeatureCollection", "Catalog", "Collection"}
_IMAGE_TYPES = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff", "application/x-hdf")
_IMAGE_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
_NOT_SCENES = {"thumbnail", "overview", "metadata"}
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_JSON = 256 << 20  # a catalog file larger than this is not a catalog


@dataclass(frozen=True, order=True)
class StacScene:
    """One scene named by a STAC item.

    Attributes:
        source: what GDAL opens: the asset's absolute local path, or its URL as given.
        item_id: the item's id (names the output).
        asset: the asset key read.
        bands: 1-based (R, G, B) band numbers from the asset's band metadata; None: the scene
            reader decides.
        item_href: the item's own JSON file (absolute), for a ``derived_from`` link; None for an
            item inside an ItemCollection file.
        datetime: the item's ``datetime`` (ISO 8601), if it has one.
    """

    source: str
    item_id: str
    asset: str
    bands: tuple[int, ...] | None = None
    item_href: str | None = None
    datetime: str | None = None

    @property
    def name(self) -> str:
        """The output's stem: the item id, with characters unsafe in a file name replaced."""
        return _ID_UNSAFE.sub("_", self.item_id).strip("._") or "item"


def is_stac_file(path: str | os.PathLike[str]) -> bool:
    """True for a local ``.json`` file (a STAC document or not: :func:`read_stac` says which)."""
    text = os.fspath(path)
    return text.lower().endswith(".json") and not _URL.match(text) and os.path.isfile(text)


def read_stac(
    path: str | os.PathLike[str], *, asset: str | None = None, require_files: bool = True
) -> list[StacScene]:
    """The scenes of a STAC Item, ItemCollection or static Catalog/Collection file.

    Args:
        path: the JSON file on disk.
        asset: the asset key to read from every item; None: ``visual``, else the first image
            asset with red, green and blue bands.
        require_files: refuse an item whose local asset file is missing (``diffris segment``);
            False keeps it, to fail as a scene (``diffris archive`` records it in its ledger).

    Returns:
        One scene per item, in the document's order.

    Raises:
        InputNotFoundError: ``path``, a linked item or an asset file is missing.
        InputError: the file is not STAC JSON, an item has no usable asset, or a link is remote.
    """
    file = Path(os.path.abspath(path))
    document = _load(file)
    kind = document.get("type")
    if kind not in _STAC_TYPES or (kind != "FeatureCollection" and "stac_version" not in document):
        raise InputError(
            f"{file} is JSON but not a STAC Item, ItemCollection, Catalog or Collection "
            f"(type {kind!r}); pass a STAC file, or a raster"
        )
    items = _items(file, document)
    if not items:
        raise InputError(f"STAC {kind} {file} holds no items; check its item links")
    scenes = [_scene(item, base, href, asset, require_files) for item, base, href in items]
    names: dict[str, str] = {}
    for scene in scenes:
        if scene.name in names:
            raise InputError(
                f"two STAC items in {file} are named {scene.name!r} ({names[scene.name]} and "
                f"{scene.source}); item ids must be unique"
            )
        names[scene.name] = scene.source
    return scenes


def _load(file: Path) -> dict[str, Any]:
    try:
        if file.stat().st_size > _MAX_JSON:
            raise InputError(f"{file} is larger than {_MAX_JSON >> 20} MiB; not a STAC file")
        document = json.loads(file.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as err:
        raise InputNotFoundError(f"{file} not found; pass an existing STAC JSON file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {file}: {err}") from err
    except json.JSONDecodeError as err:
        raise InputError(
            f"{file} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "pass a STAC Item, ItemCollection or Catalog"
        ) from err
    if not isinstance(document, dict):
        raise InputError(f"{file} holds a JSON {type(document).__name__}, not a STAC object")
    return document


def _items(file: Path, document: dict[str, Any]) -> list[tuple[Any, Path, str | None]]:
    """``(pystac.Item, folder its relative hrefs start from, its own file or None)``."""
    import pystac

    try:
        if document["type"] == "Feature":
            item = pystac.Item.from_dict(document, href=str(file), migrate=True)
            return [(item, file.parent, str(file))]
        if document["type"] == "FeatureCollection":
            collection = pystac.ItemCollection.from_dict(document, preserve_dict=False)
            return [(item, *_item_base(item, file)) for item in collection]
        catalog = pystac.read_file(str(file))
        items = list(catalog.get_items(recursive=True))  # type: ignore[attr-defined]
        return [(item, *_item_base(item, file)) for item in items]
    except (pystac.STACError, KeyError, TypeError, ValueError, OSError) as err:
        raise _link_error(file, err) from err


def _link_error(file: Path, err: BaseException) -> Exception:
    """One line for a document that does not load; pystac wraps the cause in a STACError."""
    chain = [err]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 8:
        chain.append(nxt)
    cause = next((e for e in chain if isinstance(e, OSError) or _from_http(e)), chain[-1])
    if isinstance(cause, FileNotFoundError):
        return InputNotFoundError(
            f"STAC file {file} links to {cause.filename or cause}, which is missing; fix the link"
        )
    if isinstance(cause, OSError) or _from_http(cause):  # a remote link, offline
        return InputError(
            f"{file} links to a document that cannot be read ({cause}); diffris reads static "
            "catalogs on disk: copy the linked files next to it"
        )
    return InputError(f"{file} is not valid STAC: {type(err).__name__}: {err}")


def _from_http(err: BaseException) -> bool:
    return type(err).__module__.split(".")[0] in ("urllib", "urllib3", "requests", "http")


def _item_base(item: Any, file: Path) -> tuple[Path, str | None]:
    own = item.get_self_href()
    if own and not _URL.match(own):
        own_path = Path(os.path.abspath(own))
        return own_path.parent, str(own_path)
    if own:  # a remote self link: relative hrefs mean nothing here
        return file.parent, None
    return file.parent, None


def _scene(
    item: Any, base: Path, item_href: str | None, wanted: str | None, require_files: bool
) -> StacScene:
    key, asset = _choose_asset(item, wanted)
    source = _resolve(asset.href, base)
    if require_files and not _URL.match(source) and not os.path.exists(source):
        raise InputNotFoundError(
            f"STAC item {item.id!r}, asset {key!r}: {source} not found; fix the asset's href "
            "(relative hrefs start from the item's folder)"
        )
    when = item.datetime.isoformat() if item.datetime is not None else None
    return StacScene(
        source=source,
        item_id=item.id,
        asset=key,
        bands=rgb_bands(_band_list(item, asset)),
        item_href=item_href,
        datetime=when,
    )


def _choose_asset(item: Any, wanted: str | None) -> tuple[str, Any]:
    assets: Mapping[str, Any] = item.assets
    if wanted is not None:
        if wanted not in assets:
            raise InputError(
                f"STAC item {item.id!r} has no asset {wanted!r} (assets: "
                f"{', '.join(assets) or 'none'}); pass --asset with one of them"
            )
        return wanted, assets[wanted]
    if "visual" in assets:
        return "visual", assets["visual"]
    for key, asset in assets.items():
        if _is_image(asset) and _has_rgb(_band_list(item, asset)):
            return key, asset
    raise InputError(
        f"STAC item {item.id!r} has no 'visual' asset and no image asset with red, green and "
        f"blue bands (assets: {', '.join(assets) or 'none'}); pass --asset NAME"
    )


def _is_image(asset: Any) -> bool:
    if set(asset.roles or ()) & _NOT_SCENES:
        return False
    media = (asset.media_type or "").lower()
    return media.startswith(_IMAGE_TYPES) or urlparse(asset.href).path.lower().endswith(
        _IMAGE_SUFFIXES
    )


def _band_list(item: Any, asset: Any) -> list[Mapping[str, Any]]:
    """The asset's band objects: ``bands`` (1.1), ``eo:bands`` or ``raster:bands`` (1.0)."""
    fields = asset.extra_fields
    for name in ("bands", "eo:bands", "raster:bands"):
        if isinstance(fields.get(name), list):
            return [band for band in fields[name] if isinstance(band, Mapping)]
    bands = item.properties.get("eo:bands")  # STAC 1.0 items may list them once for all assets
    return [band for band in bands if isinstance(band, Mapping)] if isinstance(bands, list) else []


def _common_names(bands: Sequence[Mapping[str, Any]]) -> list[str | None]:
    names = []
    for band in bands:
        name = band.get("eo:common_name", band.get("common_name"))
        names.append(str(name).lower() if name is not None else None)
    return names


def _has_rgb(bands: Sequence[Mapping[str, Any]]) -> bool:
    names = _common_names(bands)
    return {"red", "green", "blue"} <= set(names) or (len(bands) == 3 and not any(names))


def rgb_bands(bands: Sequence[Mapping[str, Any]]) -> tuple[int, ...] | None:
    """1-based (R, G, B) band numbers from band objects with common names; None without them.

    ``[{"common_name": "blue"}, {"common_name": "green"}, {"common_name": "red"}]`` -> (3, 2, 1).
    """
    names = _common_names(bands)
    if not {"red", "green", "blue"} <= set(names):
        return None
    return tuple(names.index(colour) + 1 for colour in ("red", "green", "blue"))


def _resolve(href: str, base: Path) -> str:
    if href.startswith("file://"):
        return unquote(urlparse(href).path)
    if _URL.match(href) or href.startswith("/vsi"):
        return href
    return os.path.abspath(os.path.join(base, unquote(href)))
