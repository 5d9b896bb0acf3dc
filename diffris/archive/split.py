"""Splitting one huge scene across workers by output row ranges, with the same stitched result.

A scene taller than ``split_rows`` becomes ``n`` *part jobs*, each producing the output rows
``[start, stop)`` (ranges aligned to the output block size, so every output block comes from
exactly one part). A part is an ordinary job for the backends, so parts spread over workers like
scenes do. Each part writes a complete little GeoTIFF of its rows (height ``stop - start``, the
scene's transform shifted down by ``start`` rows, the same band metadata and tags) into
``<out>/.diffris-parts/<job key>/``; when all parts are done the driver copies them, block by
block, into the real output (no recomputation), publishes it atomically, and deletes the parts.

Why the result is identical to one worker's: the tile grid is anchored at the raster origin and
does not depend on the row range; a part predicts *every* grid tile that overlaps its rows
(tiles straddling a boundary are computed by both neighbours, deterministically, so identically),
blends them with the same weights, uses the *scene-level* stretch (never one computed from the
part), and keeps only its own rows. Each output pixel therefore sees exactly the tiles and
weights it sees in an unsplit run. What a processor must provide: honour ``job.rows`` that way.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diffris.archive.jobs import SceneJob

__all__ = ["PARTS_DIR", "SplitGroup", "merge_parts", "row_ranges", "split_jobs"]

logger = logging.getLogger(__name__)

PARTS_DIR = ".diffris-parts"
_SPLITTABLE = (".tif", ".tiff")


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
        folder = out_dir / PARTS_DIR / job.key
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        parts = [
            dataclasses.replace(
                job,
                key=f"{job.key}:{start}-{stop}",
                output=str(folder / f"rows-{start:09d}-{stop:09d}.tif"),
                rows=(start, stop),
            )
            for start, stop in ranges
        ]
        group = SplitGroup(job, parts)
        groups.update({part.key: group for part in parts})
        tasks.extend(parts)
        logger.info("%s: %d rows split into %d parts", job.input, height, len(parts))
    return tasks, groups


def merge_parts(group: SplitGroup) -> None:
    """Copy the finished parts into ``group.job.output`` and publish it atomically.

    The parts' creation profile (tiling, compression), tags, band descriptions, band tags and
    scales carry over; overviews are rebuilt when the parts had them (nearest for masks, average
    for probabilities), and a COG-layout part yields a COG.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from diffris.geo.sinks.publish import partial_path, publish, remove_path

    output = Path(group.job.output)
    parts = sorted(group.parts, key=lambda part: part.rows or (0, 0))
    height = (parts[-1].rows or (0, 0))[1]
    partial = partial_path(output)
    merged = partial.with_name(partial.name + ".gtiff")
    try:
        with rasterio.open(parts[0].output) as first:
            profile = {**first.profile, "driver": "GTiff", "height": height}
            tags, descriptions = first.tags(), first.descriptions
            band_tags = [first.tags(band) for band in range(1, first.count + 1)]
            scales, offsets = first.scales, first.offsets
            has_overviews = bool(first.overviews(1))
            cog = first.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() == "COG"
            compress = first.profile.get("compress")
        with rasterio.open(merged, "w", **profile) as dst:
            dst.update_tags(**tags)
            for band in range(1, dst.count + 1):
                dst.set_band_description(band, descriptions[band - 1] or "")
                dst.update_tags(band, **band_tags[band - 1])
            dst.scales, dst.offsets = scales, offsets
            for part in parts:
                start, stop = part.rows or (0, 0)
                with rasterio.open(part.output) as src:
                    if (src.width, src.height) != (dst.width, stop - start):
                        raise RuntimeError(f"part {part.output} is {src.width}x{src.height}")
                    block = src.block_shapes[0][0]
                    for row in range(0, src.height, block):
                        rows = min(block, src.height - row)
                        data = src.read(window=Window(0, row, src.width, rows))
                        dst.write(data, window=Window(0, start + row, dst.width, rows))
            if has_overviews:
                factors, size = [], max(dst.width, dst.height)
                while size / (factors[-1] if factors else 1) > dst.block_shapes[0][0]:
                    factors.append(2 ** (len(factors) + 1))
                mask = tags.get("output_type", "mask") == "mask"
                dst.build_overviews(factors, Resampling.nearest if mask else Resampling.average)
        if cog:
            options = {"BLOCKSIZE": str(profile.get("blockxsize", 512))}
            if compress:
                options["COMPRESS"] = str(compress).upper()
            options["OVERVIEWS"] = "FORCE_USE_EXISTING" if has_overviews else "NONE"
            rasterio.shutil.copy(merged, partial, driver="COG", **options)
            remove_path(merged)
        else:
            merged.rename(partial)
        publish(partial, output, overwrite=True)
    except BaseException:
        remove_path(merged)
        remove_path(partial)
        raise
    remove_parts(group)


def remove_parts(group: SplitGroup) -> None:
    """Delete a group's staging folder."""
    shutil.rmtree(group.folder, ignore_errors=True)
