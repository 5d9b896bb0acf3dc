"""Names GDAL opens: local paths, URLs and ``/vsi*/`` paths, and subdataset names.

``gdalinfo`` accepts any of these, and so does diffris; they are kept as strings, never
``pathlib.Path`` (which collapses ``//`` and turns ``/vsicurl/http://host/a.tif`` into
``/vsicurl/http:/host/a.tif``). Three kinds:

- a **local path**: ``a.tif``, ``/data/S2A.SAFE/MTD_MSIL2A.xml``;
- a **remote name**: a URL (``https://...``, ``s3://...``) or a GDAL virtual file system path
  (``/vsicurl/https://...``, ``/vsis3/bucket/a.tif``, ``/vsizip/a.zip/b.tif``): never stat-ed;
- a **subdataset name**, ``DRIVER:...:path...`` (``GTIFF_DIR:1:a.tif``,
  ``SENTINEL2_L2A:/data/X.SAFE/MTD_MSIL2A.xml:10m:EPSG_32633``, ``NETCDF:"a.nc":tas``), whose
  path part may itself be local or remote. Its path part is found by shape: a quoted part, else
  the ``:``-joined span that exists, else one that starts like a remote name, else the first
  part that looks like a file name.

The helpers here let callers resolve the local part (relative to a list file's folder, or made
absolute before a job goes to a dask worker in another folder), stat it, and derive an output
name that has no ``:`` or ``/`` in it.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import PurePath

__all__ = [
    "Subdataset",
    "absolute_name",
    "is_remote",
    "local_path",
    "name_stem",
    "parse_subdataset",
]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Two or more characters before the colon, so that a Windows drive (C:\...) is not a driver.
_SUBDATASET = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:(?!//)")
_URL_CONTINUATION = re.compile(r"^(/|\d+(/|$))")  # "//host/a.tif" or a port "8000/a.tif"
_FILE_LIKE = re.compile(r"[/\\]|\.[A-Za-z0-9]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Subdataset:
    """A subdataset name split around its path part: ``prefix + quote + path + quote + suffix``.

    Attributes:
        prefix: up to the path, e.g. ``GTIFF_DIR:1:``.
        path: the file GDAL reads, e.g. ``a.tif`` (without quotes).
        suffix: after the path, e.g. ``:10m:EPSG_32633``.
        quote: ``"`` when the path was quoted, else empty.
    """

    prefix: str
    path: str
    suffix: str
    quote: str = ""

    def with_path(self, path: str) -> str:
        """The same subdataset name with another path part."""
        return f"{self.prefix}{self.quote}{path}{self.quote}{self.suffix}"

    @property
    def parameters(self) -> list[str]:
        """The parts that are neither driver nor path, e.g. ``["10m", "EPSG_32633"]``."""
        parts = self.prefix.split(":")[1:] + self.suffix.split(":")
        return [part for part in parts if part.strip("/")]


def is_remote(name: str) -> bool:
    """True for URLs and ``/vsi*/`` paths, and subdatasets of them: GDAL reads them, we can't stat."""
    sub = parse_subdataset(name)
    text = sub.path if sub is not None else name
    return text.startswith("/vsi") or bool(_URL.match(text))


def parse_subdataset(name: str) -> Subdataset | None:
    """Split a ``DRIVER:...:path...`` name; None for anything else (or an existing local file)."""
    if not _SUBDATASET.match(name) or os.path.exists(name):
        return None
    cut = name.index(":") + 1
    rest = name[cut:]
    quoted = re.search(r'"([^"]+)"', rest)
    if quoted:
        return Subdataset(
            name[: cut + quoted.start()], quoted.group(1), rest[quoted.end() :], quote='"'
        )
    tokens = rest.split(":")
    span = _existing_span(tokens) or _remote_span(tokens) or _file_like_token(tokens)
    if span is None:
        return None
    start, stop = span
    prefix = name[:cut] + "".join(token + ":" for token in tokens[:start])
    suffix = "".join(":" + token for token in tokens[stop:])
    return Subdataset(prefix, ":".join(tokens[start:stop]), suffix)


def local_path(name: str) -> str | None:
    """The local file behind ``name`` (itself, or a subdataset's path part); None if remote."""
    if is_remote(name):
        return None
    sub = parse_subdataset(name)
    return sub.path if sub is not None else name


def absolute_name(name: str, base: str | os.PathLike[str] | None = None) -> str:
    """``name`` with its local part made absolute, relative to ``base`` (default: the cwd).

    URLs and ``/vsi*/`` names are returned exactly as given.
    """
    local = local_path(name)
    if local is None:
        return name
    path = os.path.abspath(os.path.join(base or os.getcwd(), os.path.expanduser(local)))
    sub = parse_subdataset(name)
    return sub.with_path(path) if sub is not None else path


def name_stem(name: str) -> str:
    """A file-name stem for the output of ``name``: no ``:``, ``/`` or query string.

    ``/vsicurl/http://host/a.tif?x=1`` -> ``a``; ``GTIFF_DIR:2:a.tif`` -> ``a_2``;
    ``SENTINEL2_L2A:/d/X.SAFE/MTD_MSIL2A.xml:10m:EPSG_32633`` -> ``X_10m_EPSG_32633``;
    ``/d/X.SAFE/MTD_MSIL2A.xml`` -> ``X``.
    """
    sub = parse_subdataset(name)
    path = sub.path if sub is not None else name
    parts = [_path_stem(path), *(sub.parameters if sub is not None else [])]
    safe = [_UNSAFE.sub("_", part).strip("_.") for part in parts]
    return "_".join(part for part in safe if part) or "scene"


def is_product(path: str | os.PathLike[str]) -> bool:
    """True for a Sentinel-2 product folder (``X.SAFE``), which is one scene."""
    return os.fspath(path).rstrip("/").upper().endswith(".SAFE") and os.path.isdir(path)


def product_metadata(product: str | os.PathLike[str]) -> str:
    """What GDAL opens for a ``.SAFE`` folder: its ``MTD_*.xml`` (the folder if it has none)."""
    folder = os.fspath(product)
    names = sorted(n for n in os.listdir(folder) if n.startswith("MTD_") and n.endswith(".xml"))
    names = names or sorted(n for n in os.listdir(folder) if "MTD" in n and n.endswith(".xml"))
    return os.path.join(folder, names[0]) if names else folder


def _path_stem(path: str) -> str:
    if is_remote(path):
        path = re.split(r"[?#]", _URL.sub("", path.split("://", 1)[-1]), maxsplit=1)[0]
    path = path.replace("\\", "/").rstrip("/")
    parent, leaf = posixpath.split(path)
    if parent.upper().endswith(".SAFE") and "MTD" in leaf.upper():
        leaf = posixpath.basename(parent)  # a Sentinel-2 product is named by its folder
    return PurePath(leaf).stem if leaf else ""


def _existing_span(tokens: list[str]) -> tuple[int, int] | None:
    for start in range(len(tokens)):
        if tokens[start].isdigit():
            continue  # a page or band index, not a file (even if a file "1" exists)
        for stop in range(len(tokens), start, -1):
            if os.path.exists(":".join(tokens[start:stop])):
                return start, stop
    return None


def _remote_span(tokens: list[str]) -> tuple[int, int] | None:
    for start, token in enumerate(tokens):
        if token.startswith("/vsi") or (
            start + 1 < len(tokens) and tokens[start + 1].startswith("//")
        ):
            stop = start + 1
            while stop < len(tokens) and _URL_CONTINUATION.match(tokens[stop]):
                stop += 1
            return start, stop
    return None


def _file_like_token(tokens: list[str]) -> tuple[int, int] | None:
    for index, token in enumerate(tokens):
        if _FILE_LIKE.search(token) and not token.isdigit():
            return index, index + 1
    return None
