"""Checking that an output on disk is the one a job would write.

Right after a scene is processed, its output must carry the job's digest in the ``diffris_job``
tag (a GeoTIFF dataset tag, or a Zarr attribute of the store or of one of its arrays); the
ledger then records its fingerprint (size, mtime, checksum: :mod:`~diffris.archive.fingerprint`).

On a later run a done row is trusted only if its output is still that output:

- same size and mtime as recorded: skipped without reading it (a no-op rerun reads nothing);
- otherwise (or with ``--verify``) its checksum is compared: the same bytes (a ``touch``, a
  copy back) are skipped and the new mtime recorded; other bytes (a truncated file, a missing
  chunk) are reprocessed;
- no fingerprint recorded (a ledger written before schema v2, or one rebuilt from the outputs'
  tags): the tag is checked and every block is read, so a truncated file is reprocessed.

A deleted output, a symlink or folder in its place, a file of another job or tool, or an
unreadable file all reprocess.

With ``--vector-format`` a job also writes its polygons beside the raster
(:func:`vector_output`: the raster's name with ``.gpkg`` or ``.parquet``). The ledger's one
fingerprint then covers both files (sizes summed, the newest mtime, one checksum over both
checksums), so a deleted, touched-and-changed or truncated vector file reprocesses its scene
like a damaged raster does.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

from diffris.archive.fingerprint import (
    OutputFingerprint,
    OutputKindError,
    checksum_output,
    stat_output,
)
from diffris.archive.jobs import JOB_TAG, SceneJob

__all__ = [
    "VECTOR_FORMAT_OPTION",
    "VECTOR_OPTIONS_OPTION",
    "OutputCheck",
    "check_done_output",
    "fingerprint_job",
    "is_store",
    "vector_output",
    "read_fully",
    "read_job_tag",
    "verify_output",
]


@dataclass(frozen=True)
class OutputCheck:
    """The outcome of :func:`check_done_output`.

    Attributes:
        problem: None when the output is still the published one, else why it is not.
        fingerprint: a fingerprint to record for the row (its first, or a new mtime), or None.
    """

    problem: str | None
    fingerprint: OutputFingerprint | None = None


logger = logging.getLogger(__name__)

#: Job option naming the vector format written beside the raster (absent: no polygons).
VECTOR_FORMAT_OPTION = "vector_format"
#: Job option holding :class:`~diffris.geo.vector.options.VectorOptions` as a dict.
VECTOR_OPTIONS_OPTION = "vector_options"
_VECTOR_SUFFIX = {"gpkg": ".gpkg", "parquet": ".parquet"}


def vector_output(job: SceneJob) -> Path | None:
    """Where the job's polygons go (beside its raster), or None when it writes none."""
    fmt = job.options.get(VECTOR_FORMAT_OPTION)
    if not fmt:
        return None
    return Path(job.output).with_suffix(_VECTOR_SUFFIX[str(fmt)])


def _stat_job(job: SceneJob) -> OutputFingerprint:
    first = stat_output(job.output, store=is_store(job))
    vector = vector_output(job)
    if vector is None:
        return first
    second = stat_output(vector, store=False)
    return OutputFingerprint(first.size + second.size, max(first.mtime_ns, second.mtime_ns))


def _checksum_job(job: SceneJob) -> str:
    checksum = checksum_output(job.output, store=is_store(job))
    vector = vector_output(job)
    if vector is None:
        return checksum
    both = f"{checksum}:{checksum_output(vector, store=False)}"
    return hashlib.blake2b(both.encode(), digest_size=20).hexdigest()


def fingerprint_job(job: SceneJob) -> OutputFingerprint:
    """What the ledger records of a published job: its raster, and its polygons if any."""
    cheap = _stat_job(job)
    return OutputFingerprint(cheap.size, cheap.mtime_ns, _checksum_job(job))


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
    vector = vector_output(job)
    if vector is not None and not vector.is_file():
        return f"polygons {vector.name} missing"
    return None


def is_store(job: SceneJob) -> bool:
    """Whether the job writes a Zarr store (a folder) rather than a file."""
    return job.output.endswith(".zarr")


def check_done_output(
    job: SceneJob, recorded: OutputFingerprint | None, *, verify: bool = False
) -> OutputCheck:
    """Whether a done job's output is still what was published (see the module docstring).

    Args:
        job: the job whose ledger row is done.
        recorded: the fingerprint recorded at publish time; None for rows without one.
        verify: compare the checksum even when size and mtime match.
    """
    store = is_store(job)
    try:
        now = _stat_job(job)
        if recorded is None or recorded.checksum is None:
            problem = verify_output(job) or read_fully(job.output, store=store)
            vector = vector_output(job)
            if problem is None and vector is not None:
                problem = _read_vector(vector)
            if problem is not None:
                return OutputCheck(problem)
            return OutputCheck(None, fingerprint_job(job))
        if recorded.same_stat(now) and not verify:
            return OutputCheck(None)
        checksum = _checksum_job(job)
    except FileNotFoundError:
        return OutputCheck("output missing")
    except OutputKindError as err:
        return OutputCheck(str(err))
    except OSError as err:
        return OutputCheck(f"output unreadable: {err.strerror or err}")
    if checksum != recorded.checksum:
        return OutputCheck(
            f"output changed since it was published ({recorded.size} bytes then, {now.size} now)"
        )
    if recorded.same_stat(now):
        return OutputCheck(None)
    return OutputCheck(None, OutputFingerprint(now.size, now.mtime_ns, checksum))


def read_fully(path: str | Path, *, store: bool) -> str | None:
    """Read every block of an output; None when all read, else what failed (e.g. truncated)."""
    try:
        if store:
            _read_zarr(Path(path))
        else:
            _read_geotiff(Path(path))
    except Exception as err:  # any reader error means "not a usable output"
        logger.debug("cannot read %s fully: %s", path, err)
        return f"output is damaged ({type(err).__name__}: {_first_line(err)})"
    return None


def _read_vector(path: Path) -> str | None:
    """None when every layer of the polygons file reads, else what failed."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_table(path)
        else:
            import pyogrio
            from pyogrio.raw import read

            for layer, _ in pyogrio.list_layers(path):
                read(path, layer=layer)
    except Exception as err:  # any reader error means "not a usable output"
        return f"polygons {path.name} are damaged ({type(err).__name__}: {_first_line(err)})"
    return None


def _read_geotiff(path: Path) -> None:
    import rasterio

    with rasterio.open(path) as dataset:
        for _, window in dataset.block_windows(1):
            dataset.read(window=window)


def _read_zarr(path: Path) -> None:
    import zarr

    node = zarr.open(str(path), mode="r")
    arrays = [node] if isinstance(node, zarr.Array) else [a for _, a in node.arrays()]
    for array in arrays:
        for block in itertools.product(*(range(n) for n in array.cdata_shape)):
            array.get_block_selection(block)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""


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
