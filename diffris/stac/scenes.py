"""STAC items among the scenes of ``diffris segment``: their hrefs, names, bands and items."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from diffris.data.prompts import Prompt
from diffris.errors import InputError
from diffris.geo.names import name_stem
from diffris.inference.segment import SegmentOptions, SegmentResult
from diffris.stac.inputs import StacScene, is_stac_file, read_stac
from diffris.stac.items import write_output_item

__all__ = ["ResolvedScenes", "resolve_scenes"]


@dataclass(frozen=True)
class ResolvedScenes:
    """The scenes a run reads, with a STAC file expanded to its items.

    Attributes:
        sources: what GDAL opens, one per scene.
        items: the STAC item behind each scene (None for a plain raster).
        names: output stems (item ids for STAC scenes); None when no scene came from STAC,
            so plain runs keep their usual names.
    """

    sources: list[str]
    items: list[StacScene | None]
    names: list[str] | None

    def options(self, options: SegmentOptions) -> list[SegmentOptions]:
        """``options`` per scene: a STAC item's red, green and blue bands unless ``--bands``."""
        if options.bands is not None:
            return [options] * len(self.sources)
        return [
            dataclasses.replace(options, bands=item.bands)
            if item is not None and item.bands is not None
            else options
            for item in self.items
        ]

    def item_writer(
        self, prompts: Sequence[Prompt], model_id: str
    ) -> Callable[[int, SegmentResult], None]:
        """``after_scene`` for :func:`~diffris.inference.run.segment_scenes`: the output's
        STAC item (``--stac``), linked to its input item when there is one."""

        def write(index: int, result: SegmentResult) -> None:
            item = self.items[index]
            write_output_item(
                result.output,
                item_id=item.item_id if item is not None else Path(result.output).stem,
                prompts=prompts,
                model_id=model_id,
                derived_from=item.item_href if item is not None else None,
                datetime=item.datetime if item is not None else None,
            )

        return write


def resolve_scenes(
    scenes: Sequence[str], *, asset: str | None = None, require_files: bool = True
) -> ResolvedScenes:
    """Expand every STAC file (``.json``) in ``scenes`` into its items' scenes.

    Raises:
        InputError, InputNotFoundError: a STAC file that names no usable scene (see
            :func:`~diffris.stac.inputs.read_stac`); ``asset`` given with no STAC input.
    """
    sources: list[str] = []
    items: list[StacScene | None] = []
    for scene in scenes:
        if is_stac_file(scene):
            for item in read_stac(scene, asset=asset, require_files=require_files):
                sources.append(item.source)
                items.append(item)
        else:
            sources.append(str(scene))
            items.append(None)
    if not any(items):
        if asset is not None:
            raise InputError(f"--asset {asset} applies to STAC inputs (item.json, catalog.json)")
        return ResolvedScenes(sources, items, None)
    names = [
        item.name if item else name_stem(src) for item, src in zip(items, sources, strict=True)
    ]
    return ResolvedScenes(sources, items, names)
