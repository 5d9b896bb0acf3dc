"""Scenes and light stand-in processors for the archive tests.

``FieldProcessor`` is the real :class:`~diffris.archive.processor.SegmentProcessor` (so the real
``segment_scene``, sinks, tags and atomic publishing run) with a cheap numpy predictor instead of
the model; it can sleep per batch (to kill a run mid-scene) and kill its own process once (to
test worker deaths). ``BoxProcessor`` honours ``job.rows`` with a halo, for the split tests.
"""

from __future__ import annotations

import os
import signal
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from diffris.archive.jobs import SceneJob, SceneOutcome
from diffris.archive.processor import SegmentProcessor
from diffris.data.prompts import Prompt
from diffris.geo.sinks.publish import partial_path, publish
from diffris.inference.segment import SegmentOptions

CRS = "EPSG:32633"
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
PROMPTS = (Prompt(id="roofs", text="red roofs"), Prompt(id="fields", text="green fields"))
#: Small tiles keep the stand-in runs fast while exercising overlap blending.
OPTIONS = SegmentOptions(tile=64, overlap=16, batch_size=4)


def write_scene(path: Path, *, width: int = 160, height: int = 128, seed: int = 0) -> Path:
    """A seeded RGB uint8 GeoTIFF with smooth structure (UTM 33N, 10 m)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 127 + 100 * np.sin(x / (9.0 + seed) + seed) * np.cos(y / 13.0)
    data = np.stack([base + rng.normal(0, 20, base.shape) for _ in range(3)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # GDAL refuses to overwrite a file it cannot read
    profile = dict(driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=CRS)
    with rasterio.open(path, "w", transform=TRANSFORM, **profile) as dst:
        dst.write(np.clip(data, 0, 255).astype(np.uint8))
    return path


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"II*\x00 this is not really a TIFF " * 20)
    return path


class FieldPredictor:
    """Per-pixel probabilities from the tile's content relative to the tile mean (so results
    depend on tiling and blending), shifted per prompt text."""

    def __init__(self, prompts: tuple[Prompt, ...], delay: float = 0.0, busy: float = 0.0) -> None:
        self.offsets = [((zlib.crc32(p.text.encode()) % 7) - 3) * 0.3 for p in prompts]
        self.delay = delay
        # ``busy``: seconds of one C call that keeps the GIL (as a GDAL or numpy call may), so
        # the worker's Python threads cannot run meanwhile.
        self.busy_count = _gil_count(busy) if busy else 0

    @property
    def prompt_count(self) -> int:
        return len(self.offsets)

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        if self.delay:
            time.sleep(self.delay)
        if self.busy_count:
            sum(range(self.busy_count))
        grey = tiles.astype(np.float32).mean(axis=1)
        centred = (grey - grey.mean(axis=(1, 2), keepdims=True)) / 32.0
        probs = [1.0 / (1.0 + np.exp(-(centred + offset))) for offset in self.offsets]
        return np.stack(probs, axis=1).astype(np.float32)


@dataclass
class FieldProcessor(SegmentProcessor):
    """SegmentProcessor with :class:`FieldPredictor` (no torch model)."""

    delay: float = 0.0
    busy: float = 0.0  # see FieldPredictor
    die_once_on: str | None = None  # scene name whose first attempt kills its process
    marker: str | None = None  # file recording that the death happened

    def load_predictor(self, device: str) -> FieldPredictor:
        return FieldPredictor(self.prompts, self.delay, self.busy)

    def __call__(self, job: SceneJob) -> SceneOutcome:
        if self.die_once_on == job.name and self.marker and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(job)


def _gil_count(seconds: float) -> int:
    started = time.perf_counter()
    sum(range(1_000_000))
    return int(1_000_000 * seconds / max(time.perf_counter() - started, 1e-6))


def field_processor(**kw: object) -> FieldProcessor:
    return FieldProcessor(model="stand-in", prompts=PROMPTS, **kw)  # type: ignore[arg-type]


def job_options() -> dict[str, object]:
    return field_processor().job_options(OPTIONS)


@dataclass
class BoxProcessor:
    """Mask = 5x5 box mean of band 1 > 127; honours ``job.rows`` by reading a 2-row halo."""

    def setup(self, device: str | None) -> None:
        pass

    def __call__(self, job: SceneJob) -> SceneOutcome:
        started = time.perf_counter()
        with rasterio.open(job.input) as src:
            start, stop = job.rows or (0, src.height)
            top, bottom = max(0, start - 2), min(src.height, stop + 2)
            band = src.read(1, window=((top, bottom), (0, src.width))).astype(np.float32)
            padded = np.pad(band, 2, mode="edge")
            box = sum(
                padded[dy : dy + band.shape[0], dx : dx + band.shape[1]]
                for dy in range(5)
                for dx in range(5)
            )
            mask = (box / 25.0 > 127).astype(np.uint8)[start - top : start - top + stop - start]
            profile = dict(
                driver="GTiff",
                width=src.width,
                height=stop - start,
                count=1,
                dtype="uint8",
                crs=src.crs,
                transform=src.transform @ Affine.translation(0, start),
                tiled=True,
                blockxsize=64,
                blockysize=64,
                compress="deflate",
            )
        output = Path(job.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(output)
        with rasterio.open(partial, "w", **profile) as dst:
            dst.write(mask, 1)
            dst.update_tags(**job.tags)
            dst.set_band_description(1, "box")
        publish(partial, output, overwrite=True)
        return SceneOutcome(output=str(output), seconds=time.perf_counter() - started)


def read(path: str | Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def tiny_archive_args(
    source: str | Path, prompts: str | Path, out: str | Path, *extra: str, model: str = "tiny"
) -> list[str]:
    """``diffris archive`` arguments with a tiny model on small tiles, one thread: fast."""
    return [
        "archive",
        str(source),
        "--prompts",
        str(prompts),
        "-o",
        str(out),
        "--model",
        model,
        "--tile",
        "64",
        "--overlap",
        "16",
        "--threads",
        "1",
        *extra,
    ]


def archive_whole_and_split(
    root: Path, processor: SegmentProcessor, options: dict[str, object], **common: object
) -> tuple[Path, Path]:
    """Archive ``root/in`` twice, unsplit into ``root/whole`` and split into 64-row parts into
    ``root/split``; returns the two output folders (both runs asserted to succeed)."""
    from diffris.archive.runner import EXIT_OK, archive

    kwargs = dict(processor=processor, model="stand-in", model_id="field-v1", prompts=PROMPTS)
    kwargs.update(common)
    whole = archive(root / "in", out_dir=root / "whole", options=options, **kwargs)
    split = archive(
        root / "in",
        out_dir=root / "split",
        options=options,
        split_rows=64,
        split_align=64,
        **kwargs,
    )
    assert whole.exit_code == split.exit_code == EXIT_OK
    return root / "whole", root / "split"
