"""Splitting one huge scene across workers by output row ranges, with the same stitched result.

A scene taller than ``split_rows`` becomes ``n`` *part jobs*, each producing the output rows
``[start, stop)`` (ranges aligned to the output block size, so every output block comes from
exactly one part). A part is an ordinary job for the backends, so parts spread over workers like
scenes do. Each part writes a plain little GeoTIFF of its rows (height ``stop - start``, the
scene's transform shifted down by ``start`` rows, the same band metadata and tags; the job's
format and ``--co`` are kept for the merge) into ``<out>/.diffris-parts/<job key>/``; when all
parts are done the driver streams them, block by block, through the same sink an unsplit run
writes with (GeoTIFF or COG: one writer, one creation profile; no recomputation), which
publishes the output atomically, then deletes the parts and the emptied parts folder.
``.diffris-parts`` is a fixed name in a shared folder: a symbolic link or a file there is refused
with one line, never followed or deleted through (see :mod:`diffris.safe_paths`).

Why the result is identical to one worker's: the tile grid is anchored at the raster origin and
does not depend on the row range; a part predicts *every* grid tile that overlaps its rows
(tiles straddling a boundary are computed by both neighbours, deterministically, so identically),
blends them with the same weights, uses the *scene-level* stretch (never one computed from the
part), and keeps only its own rows. Each output pixel therefore sees exactly the tiles and
weights it sees in an unsplit run. What a processor must provide: honour ``job.rows`` that way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffris.archive.jobs import SceneJob
from diffris.safe_paths import Kind, refuse_unsafe

if TYPE_CHECKING:
    from diffris.geo.sinks import OutputSpec

__all__ = [
    "PARTS_DIR",
    "SplitGroup",
    "clean_parts",
    "merge_parts",
    "merged_spec",
    "row_ranges",
    "split_jobs",
]

logger = logging.getLogger(__name__)

PARTS_DIR = ".diffris-parts"
_WHAT = "split-parts folder"
_SPLITTABLE = (".tif", ".tiff")
#: Parts are plain GeoTIFF staging files; the job's format and ``--co`` apply at the merge.
_PART_OPTIONS: dict[str, Any] = {"format": "gtiff", "creation_options": []}


def row_ranges(height: int, max_rows: int, align: int) -> list[tuple[int, int]]:
    """Split ``height`` rows into near-equal ranges of at most ``max_rows``, aligned to ``align``.

    Args:
        height: raster height in pixels.
        max_rows: a scene taller than this is split.
        align: range starts are multiples of this (the output block size, in pixels).

    Returns:
        ``[(start, stop), ...]`` covering ``0..height``; one range when no split is needed.
    """
    if height <= max_rows:
        return [(0, height)]
    parts = math.ceil(height / max_rows)
    step = max(align, math.ceil(height / parts / align) * align)
    return [(start, min(start + step, height)) for start in range(0, height, step)]


@dataclass
class SplitGroup:
    """The part jobs of one scene job and their results so far."""

    job: SceneJob
    parts: list[SceneJob]
    finished: dict[str, str | None] = field(default_factory=dict)  # part key -> error or None
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return len(self.finished) == len(self.parts)

    @property
    def error(self) -> str | None:
        errors = [(key, err) for key, err in self.finished.items() if err is not None]
        if not errors:
            return None
        key, err = errors[0]
        return f"part {key.rsplit(':', 1)[1]}: {err}"

    @property
    def folder(self) -> Path:
        return Path(self.parts[0].output).parent


def split_jobs(
    jobs: Sequence[SceneJob], *, out_dir: Path, max_rows: int, align: int
) -> tuple[list[SceneJob], dict[str, SplitGroup]]:
    """Replace each GeoTIFF job of a scene taller than ``max_rows`` by its part jobs.

    Returns:
        The jobs to hand to a backend, and the split groups by part key.
    """
    import rasterio

    tasks: list[SceneJob] = []
    groups: dict[str, SplitGroup] = {}
    for job in jobs:
        height = None
        if Path(job.output).suffix.lower() in _SPLITTABLE:
            try:
                with rasterio.open(job.input) as dataset:
                    height = dataset.height
            except Exception:  # unreadable: the processor reports it as the scene's failure
                height = None
        ranges = row_ranges(height, max_rows, align) if height else [(0, 0)]
        if len(ranges) == 1:
            tasks.append(job)
            continue
        folder = _parts_folder(out_dir, job.key)
        staging = {key: value for key, value in _PART_OPTIONS.items() if key in job.options}
        parts = [
            dataclasses.replace(
                job,
                key=f"{job.key}:{start}-{stop}",
                output=str(folder / f"rows-{start:09d}-{stop:09d}.tif"),
                options={**job.options, **staging},
                rows=(start, stop),
            )
            for start, stop in ranges
        ]
        group = SplitGroup(job, parts)
        groups.update({part.key: group for part in parts})
        tasks.extend(parts)
        logger.info("%s: %d rows split into %d parts", job.input, height, len(parts))
    return tasks, groups


def clean_parts(out_dir: Path) -> None:
    """Delete the parts folder a killed run left (the caller holds the folder's lock).

    Raises:
        OutputNotWritableError: ``.diffris-parts`` is a link or not a folder.
    """
    parts = out_dir / PARTS_DIR
    refuse_unsafe(parts, Kind.FOLDER, _WHAT)
    shutil.rmtree(parts, ignore_errors=True)


def _parts_folder(out_dir: Path, key: str) -> Path:
    # Each level checked before use: mkdir(parents=True) and rmtree would follow a planted link.
    parts = out_dir / PARTS_DIR
    refuse_unsafe(parts, Kind.FOLDER, _WHAT)
    parts.mkdir(exist_ok=True)
    refuse_unsafe(parts, Kind.FOLDER, _WHAT)
    folder = parts / key
    refuse_unsafe(folder, Kind.FOLDER, _WHAT)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


def merge_parts(group: SplitGroup) -> None:
    """Stream the finished parts, in row order, through the sink an unsplit run uses.

    The output spec is rebuilt from the first part (georeferencing, prompts, tags, encoding) and
    the job's own ``format`` and ``creation_options``, so a split GeoTIFF or COG gets exactly the
    creation profile (compression, predictor, BigTIFF, blocks, overviews and their resampling,
    photometric, the user's ``--co``) and pixels of an unsplit one, published atomically.
    """
    import rasterio
    from rasterio.windows import Window

    from diffris.geo.sinks import open_sink

    parts = sorted(group.parts, key=lambda part: part.rows or (0, 0))
    height = (parts[-1].rows or (0, 0))[1]
    with rasterio.open(parts[0].output) as first:
        spec = merged_spec(first, height, group.job.options)
    with open_sink(
        group.job.output, spec, format=group.job.options.get("format"), overwrite=True
    ) as sink:
        for part in parts:
            start, stop = part.rows or (0, 0)
            with rasterio.open(part.output) as src:
                if (src.width, src.height) != (spec.width, stop - start):
                    raise RuntimeError(f"part {part.output} is {src.width}x{src.height}")
                for row in range(0, src.height, spec.block_size):
                    rows = min(spec.block_size, src.height - row)
                    sink.write_rows(start + row, src.read(window=Window(0, row, src.width, rows)))
    remove_parts(group)


def merged_spec(first: Any, height: int, options: Mapping[str, Any]) -> OutputSpec:
    """The output spec of a whole scene, from its first part (an open rasterio dataset)."""
    from diffris.data.prompts import Prompt
    from diffris.geo.sinks import (
        DEFAULT_BLOCK_SIZE,
        OutputDtype,
        OutputSpec,
        OutputType,
        parse_creation_options,
    )

    tags = first.tags()
    output_type = OutputType(tags.pop("output_type", OutputType.MASK.value))
    prompts = []
    for band in range(1, first.count + 1):
        band_tags = first.tags(band)
        threshold = band_tags.get("threshold")
        prompts.append(
            Prompt(
                id=band_tags.get("prompt_id", f"band{band}"),
                text=first.descriptions[band - 1] or f"band {band}",
                threshold=float(threshold) if threshold is not None else None,
            )
        )
    from diffris.geo.scene import gcp_georeferencing

    block_h, block_w = first.block_shapes[0]
    tiled = block_h == block_w and block_h % 16 == 0
    return OutputSpec(
        width=first.width,
        height=height,
        crs=first.crs,
        transform=first.transform,
        prompts=prompts,
        output_type=output_type,
        dtype=OutputDtype(first.dtypes[0]),
        nodata=first.nodata,
        block_size=int(options.get("tile") or (block_h if tiled else DEFAULT_BLOCK_SIZE)),
        tags=tags,
        creation_options=parse_creation_options(options.get("creation_options") or ()),
        gcps=gcp_georeferencing(first),  # the first part's rows are the scene's
    )


def remove_parts(group: SplitGroup) -> None:
    """Delete a group's staging folder, and the parts folder once no group uses it."""
    shutil.rmtree(group.folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: another scene's parts are still there
        group.folder.parent.rmdir()
