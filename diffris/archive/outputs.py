"""Checking that an output on disk is the one a job would write.

A done ledger row is trusted only if its output still exists and carries the job's digest in
the ``diffris_job`` tag (a GeoTIFF dataset tag, or a Zarr attribute of the store or of one of its
arrays). A deleted output, a file from another run or tool, or an unreadable file all reprocess.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffris.archive.jobs import JOB_TAG, SceneJob

__all__ = ["read_job_tag", "verify_output"]

logger = logging.getLogger(__name__)


def read_job_tag(path: str | Path) -> str | None:
    """The ``diffris_job`` tag of a GeoTIFF or Zarr output.

    Returns:
        The tag, or None when the output is missing, unreadable or has no such tag.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        if path.is_dir():
            return _zarr_tag(path)
        import rasterio

        with rasterio.open(path) as dataset:
            return dataset.tags().get(JOB_TAG)
    except Exception as err:  # any reader error means "not a usable output"
        logger.debug("cannot read the tags of %s: %s", path, err)
        return None


def verify_output(job: SceneJob) -> str | None:
    """None when ``job.output`` exists and carries ``job.digest``, else the reason it does not."""
    path = Path(job.output)
    if not path.exists():
        return "output missing"
    tag = read_job_tag(path)
    if tag is None:
        return f"output has no {JOB_TAG} tag (unreadable or not written by this archive)"
    if tag != job.digest:
        return f"output was written for another job ({JOB_TAG}={tag})"
    return None


def _zarr_tag(path: Path) -> str | None:
    import zarr

    node = zarr.open(str(path), mode="r")
    if JOB_TAG in node.attrs:
        return str(node.attrs[JOB_TAG])
    if isinstance(node, zarr.Group):
        for _, array in node.arrays():
            if JOB_TAG in array.attrs:
                return str(array.attrs[JOB_TAG])
    return None
