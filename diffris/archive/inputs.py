"""Which scenes an archive run covers: a folder, a glob, a scene list, or one raster.

``discover_scenes`` turns the first argument of ``diffris archive`` into a sorted, deduplicated
list of :class:`SceneInput`. Each carries the string GDAL opens (an absolute local path, or a URL
kept as given) and a *relative name* from which the output path is derived, so that
``/data/incoming/2024/06/a.tif`` becomes ``<out>/2024/06/a.tif`` and two ``a.tif`` in different
subfolders never collide.

- **folder**: every regular file below it (recursively, through folder links but never around a
  loop, see :mod:`diffris.archive.walk`) with a raster extension; hidden files and folders
  (names starting with ``.``, e.g. partial outputs) and anything inside ``exclude`` (the output
  folder when it lies inside the input folder) are ignored. A Sentinel-2 product folder
  (``X.SAFE``) is one scene, not a folder of JP2 files: GDAL is handed its ``MTD_*.xml``, and
  the scene reader takes its 10 m subdataset (B4, B3, B2, B8).
- **glob**: ``glob.glob(pattern, recursive=True)`` rules, so ``/data/**/*.tif`` descends (``**``
  walks as a folder source does, without loops); names are relative to the pattern's fixed
  leading folder.
- **scene list** (``.txt``/``.lst``/``.list``): one name GDAL opens per line (a path, a URL, a
  subdataset name such as ``GTIFF_DIR:2:a.tif``, a ``.SAFE`` folder); ``#`` comments and blank
  lines are skipped; a line with a NUL byte, longer than PATH_MAX, or naming a FIFO or device
  is refused with its line number; relative paths (also inside subdataset names) are relative
  to the list's folder. Listed files that do not exist are kept: they fail as scenes (recorded in the ledger)
  instead of stopping the run.
- **one raster**: a single file with a raster extension.
- **STAC** (``.json``): an Item, ItemCollection or static Catalog/Collection on disk; each item
  is a scene (its ``asset``, by default ``visual``; see :mod:`diffris.stac.inputs`), named by
  its id (``<id>.tif``). A missing asset file fails as a scene, as in a scene list.

GDAL URLs (``/vsicurl/...``, ``/vsis3/...``, ``https://...``, ``s3://...``) are kept exactly as
given; their identity is the URL (they are not stat-ed). Subdataset names keep their syntax, with
their local file made absolute (see :mod:`diffris.geo.names`); that file is what is stat-ed.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from diffris.archive.walk import glob_paths, regular_or_missing, through_loop, walk
from diffris.errors import InputError, InputNotFoundError
from diffris.geo.names import (
    absolute_name,
    is_product,
    is_remote,
    local_path,
    name_stem,
    parse_subdataset,
    product_metadata,
)
from diffris.safe_paths import describe
from diffris.stac.inputs import StacScene, is_stac_file, read_stac

__all__ = [
    "LIST_EXTENSIONS",
    "RASTER_EXTENSIONS",
    "InputIdentity",
    "SceneInput",
    "discover_scenes",
    "identify",
    "is_remote",
]

#: File extensions a folder or glob source treats as scenes (case-insensitive).
RASTER_EXTENSIONS = frozenset(
    {".tif", ".tiff", ".gtiff", ".jp2", ".j2k", ".vrt", ".img", ".ntf", ".nitf", ".ecw", ".sid"}
)
#: Extensions of scene-list files.
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HASH_CHUNK = 1 << 20
_MAX_NAME = 4096  # PATH_MAX: no longer name can be opened


@dataclass(frozen=True, order=True)
class SceneInput:
    """One scene to process.

    Attributes:
        source: what GDAL opens: an absolute local path, a URL exactly as given, or a
            subdataset name whose local file is absolute.
        name: relative POSIX path naming the output (e.g. ``2024/06/a.tif``), unique in a run.
        stac: the STAC item the scene came from (bands, id, its file for ``derived_from``).
    """

    source: str
    name: str
    stac: StacScene | None = field(default=None, compare=False)

    @property
    def remote(self) -> bool:
        """True for GDAL URLs (identity is the URL; never stat-ed or hashed)."""
        return is_remote(self.source)

    @property
    def file(self) -> str | None:
        """The local file to stat (a subdataset's file); None for URLs."""
        return local_path(self.source)


@dataclass(frozen=True)
class InputIdentity:
    """What identifies a scene's content, compared between runs.

    Attributes:
        size: file size in bytes; None for URLs and missing files.
        mtime_ns: modification time in nanoseconds; None for URLs and missing files.
        sha256: hex content hash when requested (``--hash-content``), else None.
    """

    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None

    @property
    def fingerprint(self) -> str:
        """A string that changes exactly when the scene counts as changed.

        With a content hash, size and hash decide (a ``touch`` that keeps the bytes does not
        reprocess); without one, size and modification time do.
        """
        if self.size is None:
            return "unstat-ed"
        if self.sha256 is not None:
            return f"size={self.size};sha256={self.sha256}"
        return f"size={self.size};mtime_ns={self.mtime_ns}"


def identify(
    scene: SceneInput, *, hash_content: bool = False, known: InputIdentity | None = None
) -> InputIdentity:
    """Stat (and optionally hash) a scene.

    Args:
        scene: the scene.
        hash_content: compute the SHA-256 of the file's bytes.
        known: the identity recorded last time; its hash is reused when size and mtime are
            unchanged, so a nightly ``--hash-content`` run reads only new or changed files.

    Returns:
        The identity; all None for URLs and files that do not exist (those fail when processed).
    """
    if scene.file is None:
        return InputIdentity()
    try:
        info = os.stat(scene.file)
    except (OSError, ValueError):
        return InputIdentity()
    if not stat.S_ISREG(info.st_mode):
        return InputIdentity()  # a device would never end a hash; GDAL reports what it is
    size, mtime = info.st_size, info.st_mtime_ns
    if not hash_content:
        return InputIdentity(size, mtime)
    if known is not None and known.sha256 and (known.size, known.mtime_ns) == (size, mtime):
        return InputIdentity(size, mtime, known.sha256)
    digest = hashlib.sha256()
    try:
        with open(scene.file, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError:
        return InputIdentity()
    return InputIdentity(size, mtime, digest.hexdigest())


def discover_scenes(
    source: str | Path, *, exclude: list[Path] | None = None, asset: str | None = None
) -> list[SceneInput]:
    """List the scenes a source names (see the module docstring for the kinds).

    Args:
        source: a folder, a glob pattern, a scene-list file, one raster, or one name GDAL
            opens (a URL, a subdataset name, a .SAFE product).
        exclude: folders whose contents are never scenes (pass the output folder).
        asset: the asset read from each STAC item (None: ``visual``, else the first RGB one).

    Returns:
        Scenes sorted by source, without duplicates (same real path), with unique names.

    Raises:
        InputNotFoundError: ``source`` does not exist and is not a glob or URL.
        InputError: it names no scene, or is a file of an unknown kind.
    """
    text = str(source)
    excluded = [Path(os.path.realpath(folder)) for folder in exclude or []]
    kind = "source"
    if is_remote(text):
        scenes = [_url_scene(text)]
    elif parse_subdataset(text) is not None:
        scenes = [_subdataset_scene(absolute_name(text), None)]
    elif is_product(text):
        path = os.path.abspath(text)
        scenes = [_product_scene(Path(path), Path(path).parent)]
    elif _GLOB_CHARS.search(text) and not os.path.exists(text):
        scenes = _from_glob(text, excluded)
        kind = "glob"
    elif os.path.isdir(text):
        scenes = _from_folder(Path(text), excluded)
        kind = "folder"
    elif os.path.isfile(text):
        suffix = Path(text).suffix.lower()
        if is_stac_file(text):
            scenes = [
                _stac_scene(item) for item in read_stac(text, asset=asset, require_files=False)
            ]
            kind = "STAC file"
        elif suffix in LIST_EXTENSIONS:
            scenes = _from_list(Path(text))
            kind = "scene list"
        elif suffix in RASTER_EXTENSIONS:
            path = os.path.abspath(text)
            scenes = [SceneInput(path, Path(path).name)]
        else:
            raise InputError(
                f"{text} is neither a raster ({', '.join(sorted(RASTER_EXTENSIONS))}) nor a "
                f"scene list ({', '.join(sorted(LIST_EXTENSIONS))}) nor STAC (.json); pass a "
                "folder, a glob such as '/data/**/*.tif', a .txt file listing one scene per line, "
                "or a STAC catalog.json"
            )
    elif os.path.exists(text):
        raise InputError(
            f"{text} is a {describe(os.stat(text).st_mode)}, not a folder, raster or scene list; "
            "pass a folder, a glob or a .txt file listing one scene per line"
        )
    else:
        raise InputNotFoundError(f"{text} not found; pass an existing folder, glob or scene list")
    scenes = _deduplicate(scenes)
    if not scenes:
        raise InputError(
            f"no scenes in {kind} {text} (looked for "
            f"{', '.join(sorted(RASTER_EXTENSIONS))}); check the path or pattern"
        )
    return scenes


def _from_folder(root: Path, excluded: list[Path]) -> list[SceneInput]:
    root = Path(os.path.abspath(root))
    scenes = []

    def keep(folder: Path) -> bool:  # link loops are pruned by the walk itself
        return not folder.name.startswith(".") and not _inside(folder, excluded)

    for here, dirs, files in walk(root, keep=keep):
        products = [d for d in dirs if is_product(here / d)]
        scenes += [_product_scene(here / d, root) for d in products]
        dirs[:] = [d for d in dirs if d not in products]
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in RASTER_EXTENSIONS:
                continue
            path = here / name
            if regular_or_missing(path):
                scenes.append(SceneInput(str(path), path.relative_to(root).as_posix()))
    return scenes


def _from_glob(pattern: str, excluded: list[Path]) -> list[SceneInput]:
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if _GLOB_CHARS.search(part)), len(parts))
    base = Path(os.path.abspath(Path(*parts[:fixed]) if fixed else "."))
    scenes = []
    for match in glob_paths(pattern, base):
        path = Path(os.path.abspath(match))
        if _inside(path, excluded) or through_loop(path, base):
            continue
        if is_product(path):
            scenes.append(_product_scene(path, base))
        elif path.is_file():
            scenes.append(SceneInput(str(path), _relative_name(path, base)))
    return scenes


def _from_list(listing: Path) -> list[SceneInput]:
    folder = Path(os.path.abspath(listing.parent))
    entries: list[str] = []
    try:
        lines = listing.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read scene list {listing}: {err}; save it as UTF-8 text") from err
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            entries.append(_checked_entry(entry, listing, number))
    # Names are resolved against the list's folder, not the cwd; URLs are kept as given.
    resolved = [absolute_name(entry, folder) for entry in entries]
    local = [name for name in resolved if not is_remote(name)]
    files = [local_path(name) or name for name in local]
    base = Path(os.path.commonpath([os.path.dirname(path) for path in files])) if files else None
    scenes = []
    for name in resolved:
        if is_remote(name):
            scenes.append(_url_scene(name))
        elif parse_subdataset(name) is not None:
            scenes.append(_subdataset_scene(name, base))
        elif is_product(name):
            scenes.append(_product_scene(Path(name), base))
        else:
            scenes.append(SceneInput(name, _relative_name(Path(name), base)))
    return scenes


def _checked_entry(entry: str, listing: Path, number: int) -> str:
    """A scene-list line that can name a scene, or one line saying why not (never the line whole:
    it may be a megabyte)."""
    problem = None
    if "\x00" in entry:
        problem = "contains a NUL byte"
    elif len(entry) > _MAX_NAME:
        problem = f"is {len(entry)} characters long (a scene name has at most {_MAX_NAME})"
    elif not is_remote(entry) and parse_subdataset(entry) is None:
        path = entry if os.path.isabs(entry) else os.path.join(listing.parent, entry)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = None  # missing: it fails as a scene, recorded in the ledger
        if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            problem = f"{entry[:200]} is a {describe(mode)}, not a raster file"
    if problem is None:
        return entry
    raise InputError(f"scene list {listing}, line {number}: {problem}; fix or remove that line")


def _stac_scene(item: StacScene) -> SceneInput:
    # The item id names the output; the asset's extension is kept for _output_names' rules.
    suffix = PurePosixPath(item.source.split("?", 1)[0]).suffix
    return SceneInput(item.source, f"{item.name}{suffix}", stac=item)


def _url_scene(url: str) -> SceneInput:
    # /vsicurl/https://host/a/b.tif -> host/a/b.tif: the URL's host and path name the output.
    sub = parse_subdataset(url)
    path = sub.path if sub is not None else url
    while path.startswith("/vsi"):
        path = path.split("/", 2)[2] if path.count("/") >= 2 else path
    path = _URL.sub("", path).split("?", 1)[0]
    # Host and folders become output folders; "host:8000" must not put a colon in a path.
    folders = [_UNSAFE.sub("_", part) for part in PurePosixPath(path.lstrip("/")).parent.parts]
    return SceneInput(url, _with_stem(PurePosixPath(*folders), url, PurePosixPath(path).suffix))


def _subdataset_scene(name: str, base: Path | None) -> SceneInput:
    # GTIFF_DIR:2:/data/x/a.tif -> x/a_2.tif: the file's place and the subdataset's parameters.
    file = Path(local_path(name) or name)
    folder = PurePosixPath(_relative_name(file, base)).parent
    return SceneInput(name, _with_stem(folder, name, file.suffix))


def _product_scene(product: Path, base: Path | None) -> SceneInput:
    """A Sentinel-2 ``.SAFE`` folder: GDAL opens its ``MTD_*.xml``; the folder names the output."""
    return SceneInput(product_metadata(product), _relative_name(product, base))


def _with_stem(folder: PurePosixPath, name: str, suffix: str) -> str:
    # Keep the extension so that output naming (which drops it) sees the stem whole.
    return (folder / f"{name_stem(name)}{suffix}").as_posix()


def _relative_name(path: Path, base: Path | None) -> str:
    try:
        return path.relative_to(base).as_posix() if base is not None else path.name
    except ValueError:
        return PurePosixPath(*path.parts[1:]).as_posix()


def _inside(path: Path, folders: list[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real == folder or folder in real.parents for folder in folders)


def _deduplicate(scenes: list[SceneInput]) -> list[SceneInput]:
    seen: set[str] = set()
    unique = []
    for scene in sorted(scenes):
        file = scene.file
        key = scene.source if file is None else scene.source.replace(file, os.path.realpath(file))
        if key not in seen:
            seen.add(key)
            unique.append(scene)
    return unique
