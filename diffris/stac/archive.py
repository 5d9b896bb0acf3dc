"""The archive's STAC side: an item beside each published output, and the folder's catalog.

The runner's driver calls :meth:`ArchiveStac.published` right after a scene's output is
published and verified (before its ledger row says done, so a done row always has its item),
and :meth:`ArchiveStac.kept` for a scene skipped as already done, so a rerun with ``--stac``
over an archive made without it, or with its catalog deleted, fills the catalog in.
"""

from __future__ import annotations

from pathlib import Path

from diffris.archive.jobs import SceneJob
from diffris.stac.catalog import ArchiveCatalog
from diffris.stac.items import item_path, write_output_item

__all__ = ["ArchiveStac"]


class ArchiveStac:
    """Writes items and keeps ``<out>/catalog.json`` (driver process only)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.catalog = ArchiveCatalog(out_dir)
        self._linked: set[str] | None = None

    def published(self, job: SceneJob) -> Path:
        """Write the item of ``job``'s new output and link it from the catalog.

        Returns:
            The item's path.
        """
        item = write_output_item(
            job.output,
            item_id=job.stac.item_id if job.stac else Path(job.output).stem,
            prompts=job.prompts,
            model_id=job.model_id,
            derived_from=job.stac.item_href if job.stac else None,
            datetime=job.stac.datetime if job.stac else None,
            extra={"diffris:job": job.digest},
        )
        self._link(item)
        return item

    def kept(self, job: SceneJob) -> None:
        """For a scene skipped as done: write its item if missing, link it if unlinked."""
        item = item_path(job.output)
        if not item.is_file():
            self.published(job)
        elif self.catalog.href(item) not in self._linked_hrefs():
            self._link(item)

    def _link(self, item: Path) -> None:
        linked = self._linked_hrefs()
        linked.add(self.catalog.href(item))
        self.catalog.write(linked)

    def _linked_hrefs(self) -> set[str]:
        # read once per run (links to items deleted since are dropped), then kept in memory:
        # this process is the catalog's only writer
        if self._linked is None:
            self._linked = set(self.catalog.existing_item_hrefs())
        return self._linked
