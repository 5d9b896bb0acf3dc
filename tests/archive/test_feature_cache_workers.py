"""``diffris archive --workers 2 --feature-cache``: spawned workers fill and read one cache."""

import numpy as np
import rasterio

from diffris.archive.backends import InlineBackend
from diffris.archive.pool import ProcessPoolBackend
from diffris.archive.processor import SegmentProcessor
from diffris.archive.runner import EXIT_OK, archive
from diffris.inference.feature_cache import CacheDtype, FeatureCacheOptions
from diffris.models.names import model_identity
from tests.archive.archive_helpers import OPTIONS, PROMPTS, write_scene

NAMES = ["a.tif", "b.tif", "c.tif"]


def _run(source, out, backend, prompts, cache=None):
    processor = SegmentProcessor(model="tiny", prompts=prompts, feature_cache=cache)
    report = archive(
        source,
        out_dir=out,
        processor=processor,
        model="tiny",
        model_id=model_identity("tiny"),
        prompts=prompts,
        options=processor.job_options(OPTIONS),
        backend=backend,
    )
    assert report.exit_code == EXIT_OK and report.counts["done"] == 3, report.to_dict()


def _markers(cache):
    return {p: p.stat().st_mtime_ns for p in cache.glob("entries/*/tiles/*.json")}


def test_two_workers_reuse_last_years_features_for_new_prompts(tmp_path, restore_threads):
    for index, name in enumerate(NAMES):
        write_scene(tmp_path / "in" / name, width=128, height=96, seed=index)
    cache = FeatureCacheOptions(str(tmp_path / "features"), dtype=CacheDtype.FLOAT32)
    old, new = PROMPTS[:1], PROMPTS[1:]
    _run(tmp_path / "in", tmp_path / "old", ProcessPoolBackend(2, threads=1), old, cache)
    filled = _markers(tmp_path / "features")
    assert len(filled) == 3 * 2 * 3  # 3 scenes of 2 x 3 tiles
    _run(tmp_path / "in", tmp_path / "new", ProcessPoolBackend(2, threads=1), new, cache)
    assert _markers(tmp_path / "features") == filled  # every tile read, none encoded again
    _run(tmp_path / "in", tmp_path / "plain", InlineBackend(device="cpu", threads=1), new)
    for name in NAMES:
        with (
            rasterio.open(tmp_path / "new" / name) as a,
            rasterio.open(tmp_path / "plain" / name) as b,
        ):
            assert np.array_equal(a.read(), b.read()), name
