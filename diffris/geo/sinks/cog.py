"""Cloud-optimised GeoTIFF output, made by copying a finished tiled GeoTIFF.

The rows stream into an intermediate tiled GeoTIFF (a second temporary name next to the output),
overviews are built into it (nearest for masks, average for probabilities, or the user's
``--co OVERVIEW_RESAMPLING``), and GDAL's COG driver *copies* it to the temporary output. Bands
are grey/undefined data (``PHOTOMETRIC=MINISBLACK``), never RGB or alpha: see
:mod:`.photometric` for the 3- and 4-band uint8 case, which the COG driver would tag RGB(A). rasterio's ``driver="COG"`` writer is never opened for
writing: it buffers the whole raster in memory.

Defaults for the copy (each overridable with ``--co``, passed to the COG driver as is):
``COMPRESS=DEFLATE``, ``PREDICTOR=YES``, ``BLOCKSIZE=<block size>``, ``BIGTIFF=IF_SAFER``,
``OVERVIEWS=FORCE_USE_EXISTING`` (``NONE`` when the raster fits in one block).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import rasterio.shutil
from rasterio.enums import Resampling

from diffris.errors import OutputNotWritableError
from diffris.geo.sinks.gdal_options import probe_creation_options
from diffris.geo.sinks.geotiff import GeoTiffSink, gtiff_options, open_gtiff
from diffris.geo.sinks.photometric import copy_as_data_bands, needs_minisblack_copy
from diffris.geo.sinks.publish import remove_path
from diffris.geo.sinks.spec import OutputFormat, OutputSpec, OutputType
from diffris.safe_paths import create_exclusive

__all__ = ["CogSink", "cog_options", "overview_factors", "overview_resampling"]

logger = logging.getLogger(__name__)


def overview_factors(width: int, height: int, block_size: int) -> list[int]:
    """Decimation factors 2, 4, 8, ... until the smallest overview fits in one block."""
    factors: list[int] = []
    factor = 1
    while math.ceil(max(width, height) / factor) > block_size:
        factor *= 2
        factors.append(factor)
    return factors


def overview_resampling(spec: OutputSpec) -> Resampling:
    """Nearest for masks (keeps 0/1), average for probabilities."""
    return Resampling.nearest if spec.output_type is OutputType.MASK else Resampling.average


def cog_options(spec: OutputSpec, *, with_user: bool = True) -> dict[str, str]:
    """COG driver options for the copy: the defaults above, then ``spec.creation_options``."""
    factors = overview_factors(spec.width, spec.height, spec.block_size)
    defaults = {
        "COMPRESS": "DEFLATE",
        "PREDICTOR": "YES",
        "BLOCKSIZE": str(spec.block_size),
        "BIGTIFF": "IF_SAFER",
        "OVERVIEWS": "FORCE_USE_EXISTING" if factors else "NONE",
        "OVERVIEW_RESAMPLING": overview_resampling(spec).name.upper(),
    }
    return {**defaults, **spec.creation_options} if with_user else defaults


def _user_resampling(options: dict[str, str], spec: OutputSpec) -> Resampling:
    """The overview resampling: ``--co OVERVIEW_RESAMPLING`` (or ``RESAMPLING``) if given.

    The overviews are built into the intermediate file and the COG driver copies them, so the
    user's choice must apply here (the driver ignores it for existing overviews).
    """
    name = options.get("OVERVIEW_RESAMPLING", options.get("RESAMPLING", "")).lower()
    if name in Resampling.__members__:
        return Resampling[name]
    return overview_resampling(spec)


class CogSink(GeoTiffSink):
    """Writes a tiled GeoTIFF, then copies it to a COG with overviews at commit."""

    format = OutputFormat.COG

    def __init__(self, path: str | Path, spec: OutputSpec, *, overwrite: bool = False) -> None:
        super().__init__(path, spec, overwrite=overwrite)
        self._intermediate: Path | None = None
        self._extra: list[Path] = []

    def _check_options(self) -> None:
        if self.spec.creation_options:
            probe_creation_options(
                "COG",
                cog_options(self.spec, with_user=False),
                self.spec.creation_options,
                self.spec.numpy_dtype.name,
            )

    def _create(self, partial: Path) -> None:
        # User --co options are for the COG copy; the intermediate keeps GTiff defaults.
        self._intermediate = partial.with_name(partial.name + ".gtiff")
        _reserve(self._intermediate)
        self._dataset = open_gtiff(self._intermediate, self.spec, gtiff_options(self.spec))

    def _finish(self, partial: Path) -> None:
        assert self._dataset is not None and self._intermediate is not None
        spec = self.spec
        factors = overview_factors(spec.width, spec.height, spec.block_size)
        options = cog_options(spec)
        if factors and options["OVERVIEWS"].upper() != "NONE":
            self._dataset.build_overviews(factors, _user_resampling(options, spec))
        self._close()
        logger.debug("copying %s to COG with %s", self._intermediate, options)
        if needs_minisblack_copy(spec.count, spec.numpy_dtype.name, options):
            # The COG driver would tag 3-4 uint8 bands RGB(A); see .photometric.
            cog = self._intermediate.with_name(self._intermediate.name + ".rgb")
            _reserve(cog)
            self._extra.append(cog)
            rasterio.shutil.copy(self._intermediate, cog, driver="COG", **options)
            copy_as_data_bands(cog, partial, options)
        else:
            rasterio.shutil.copy(self._intermediate, partial, driver="COG", **options)
        self._discard_files()

    def _discard(self) -> None:
        super()._discard()
        self._discard_files()

    def _discard_files(self) -> None:
        for path in [self._intermediate, *self._extra]:
            if path is not None:
                remove_path(path)
        self._intermediate, self._extra = None, []


def _reserve(path: Path) -> None:
    # Named after the (new) partial: something already there was planted; never write through it.
    try:
        create_exclusive(path)
    except FileExistsError as err:
        raise OutputNotWritableError(
            f"{path} appeared next to a temporary output of this run; refusing to write through "
            "it, remove it and rerun"
        ) from err
