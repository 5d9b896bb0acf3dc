"""The archive's STAC Catalog: ``<out>/catalog.json`` linking the item of every published scene.

Only the archive's driver writes it (the process that holds the output folder's lock and writes
the ledger; workers never touch it), once after each scene is published. Each update writes the
whole catalog under a temporary name and renames it over ``catalog.json``: a reader, or a run
killed mid-write, sees the old catalog or the new one, never a torn file
(:func:`~diffris.stac.items.write_json_atomic`; a killed run's temporary file is removed by the
next run's clean-up). A ``catalog.json`` that is unreadable anyway (edited by hand) is rebuilt
from the items the next update adds. Links are relative, so the folder can be moved or synced.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any

from diffris.stac.items import write_json_atomic

__all__ = ["CATALOG_ID", "CATALOG_NAME", "ArchiveCatalog"]

logger = logging.getLogger(__name__)

CATALOG_NAME = "catalog.json"
CATALOG_ID = "diffris-archive"


class ArchiveCatalog:
    """The catalog of an archive output folder."""

    def __init__(self, out_dir: str | Path) -> None:
        self.folder = Path(os.path.abspath(out_dir))
        self.path = self.folder / CATALOG_NAME

    def item_hrefs(self) -> list[str]:
        """The catalog's item links (relative POSIX paths); empty when there is no catalog."""
        document = self._read()
        if document is None:
            return []
        links = document.get("links", [])
        return [str(link["href"]) for link in links if link.get("rel") == "item"]

    def add(self, item_file: str | Path) -> None:
        """Link ``item_file`` (inside the folder) and rewrite the catalog atomically.

        Links to items whose files are gone are dropped at the same time.
        """
        hrefs = set(self.existing_item_hrefs())
        hrefs.add(self.href(item_file))
        self.write(hrefs)

    def existing_item_hrefs(self) -> list[str]:
        """:meth:`item_hrefs` whose item files still exist."""
        return [h for h in self.item_hrefs() if (self.folder / h).is_file()]

    def write(self, hrefs: set[str] | list[str]) -> None:
        """Rewrite the catalog atomically with exactly these item links (sorted)."""
        write_json_atomic(self.path, self._document(sorted(hrefs)))

    def href(self, item_file: str | Path) -> str:
        """The catalog's link to ``item_file``: ``./2024/06/a.stac.json``."""
        relative = PurePosixPath(Path(os.path.relpath(os.path.abspath(item_file), self.folder)))
        return f"./{relative.as_posix()}"

    def _read(self) -> dict[str, Any] | None:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            logger.warning("%s is unreadable (%s); rebuilding it", self.path, err)
            return None
        return document if isinstance(document, dict) else None

    def _document(self, hrefs: list[str]) -> dict[str, Any]:
        import pystac

        catalog = pystac.Catalog(
            id=CATALOG_ID,
            description=f"Masks published by diffris archive in {self.folder.name}",
            title="diffris archive",
        )
        document = catalog.to_dict(include_self_link=False, transform_hrefs=False)
        document["links"] = [
            {"rel": "root", "href": f"./{CATALOG_NAME}", "type": "application/json"},
            *({"rel": "item", "href": h, "type": "application/geo+json"} for h in hrefs),
        ]
        return document
