"""Give a 3- or 4-band uint8 COG ``PHOTOMETRIC=MINISBLACK`` tags: its bands are data, not colours.

GDAL's GTiff writer calls any 3- or 4-band uint8 raster RGB (4 bands: RGB + alpha) unless the
``PHOTOMETRIC`` creation option says otherwise, and the COG driver has no such option. A 4-prompt
mask would carry an alpha band, and ``gdalwarp`` (or any TIFF reader) would treat the 4th prompt
as transparency. For those band counts only, the COG driver's product is copied once more by the
GTiff driver with ``COPY_SRC_OVERVIEWS=YES`` (which keeps the COG layout: IFDs first, overviews
before the full resolution, the ghost header) and an explicit ``PHOTOMETRIC=MINISBLACK``, with
the compression, predictor, blocks and BigTIFF-ness the COG driver chose.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import rasterio
import rasterio.shutil

__all__ = ["copy_as_data_bands", "needs_minisblack_copy"]

logger = logging.getLogger(__name__)

#: The COG's LEVEL option under the GTiff driver's names, by compression.
_LEVEL_NAMES = {"DEFLATE": "ZLEVEL", "ZSTD": "ZSTD_LEVEL", "LZMA": "LZMA_PRESET"}
_PREDICTOR_NUMBERS = {"YES": "2", "STANDARD": "2", "FLOATING_POINT": "3"}
#: COG options for the overviews and the GTiff config options that carry them.
_OVERVIEW_CONFIG = {
    "OVERVIEW_COMPRESS": "COMPRESS_OVERVIEW",
    "OVERVIEW_PREDICTOR": "PREDICTOR_OVERVIEW",
}


def needs_minisblack_copy(count: int, dtype: str, options: Mapping[str, str]) -> bool:
    """Whether GDAL would tag this COG RGB(A): 3 or 4 uint8 bands (JPEG stays YCbCr/RGB)."""
    return count in (3, 4) and dtype == "uint8" and options.get("COMPRESS", "").upper() != "JPEG"


def copy_as_data_bands(cog: Path, target: Path, options: Mapping[str, str]) -> None:
    """Copy the COG at ``cog`` to ``target`` as MINISBLACK, keeping its layout and encoding.

    Args:
        cog: a COG written by GDAL's COG driver.
        target: the file to create.
        options: the COG driver options ``cog`` was written with (for LEVEL and NUM_THREADS).
    """
    with rasterio.open(cog) as src:
        structure = src.tags(ns="IMAGE_STRUCTURE")
        block_h, block_w = src.block_shapes[0]
    compress = structure.get("COMPRESSION", "NONE").upper()
    gtiff = {
        "COPY_SRC_OVERVIEWS": "YES",
        "TILED": "YES",
        "BLOCKXSIZE": str(block_w),
        "BLOCKYSIZE": str(block_h),
        "COMPRESS": compress,
        "INTERLEAVE": structure.get("INTERLEAVE", "PIXEL"),
        "BIGTIFF": "YES" if cog.read_bytes()[2:4] in (b"+\x00", b"\x00+") else "NO",
        "PHOTOMETRIC": "MINISBLACK",
    }
    if "PREDICTOR" in structure:
        gtiff["PREDICTOR"] = structure["PREDICTOR"]
    if "LEVEL" in options and compress in _LEVEL_NAMES:
        gtiff[_LEVEL_NAMES[compress]] = options["LEVEL"]
    for key in ("NUM_THREADS", "MAX_Z_ERROR"):
        if key in options:
            gtiff[key] = options[key]
    # The overviews are re-encoded under the GTiff driver's overview settings (config options).
    overview_config = {
        name: options[key] for key, name in _OVERVIEW_CONFIG.items() if key in options
    }
    if "PREDICTOR_OVERVIEW" in overview_config:
        # As the COG driver does: YES/STANDARD/FLOATING_POINT as GTiff numbers; NO leaves the
        # overviews the full resolution's predictor.
        value = overview_config.pop("PREDICTOR_OVERVIEW").upper()
        if value in _PREDICTOR_NUMBERS or value.isdigit():
            overview_config["PREDICTOR_OVERVIEW"] = _PREDICTOR_NUMBERS.get(value, value)
    logger.debug("copying %s as MINISBLACK with %s, %s", cog, gtiff, overview_config)
    with rasterio.Env(**overview_config):
        rasterio.shutil.copy(cog, target, driver="GTiff", **gtiff)
