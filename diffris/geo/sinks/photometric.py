"""Mark a finished COG's bands as plain data (``PHOTOMETRIC=MINISBLACK``, no alpha) in place.

GDAL's GTiff writer calls any 3- or 4-band uint8 raster RGB (4 bands: RGB + alpha) unless the
``PHOTOMETRIC`` creation option says otherwise, and the COG driver has no such option: it never
passes one on. A 4-prompt mask would then carry an alpha band, and ``gdalwarp`` blanks every
other band wherever that prompt is 0. The two TIFF tags concerned are small fixed-size values,
so they are rewritten in place with tifffile, byte for byte, which keeps the COG layout (IFDs
before data) intact; GDAL already records the bands' grey/undefined interpretation itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["mark_bands_as_data"]

logger = logging.getLogger(__name__)

_RGB, _MINISBLACK = 2, 1
_EXTRASAMPLE_UNSPECIFIED = 0
_JPEG = 7  # its stream encodes colour components itself; retagging would change the pixels


def mark_bands_as_data(path: Path) -> int:
    """Retag every RGB image of the TIFF at ``path`` as MINISBLACK with unspecified extra samples.

    Returns:
        The number of images (full resolution and overviews) retagged.
    """
    import tifffile

    changed = 0
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for page in tif.pages:
            tags = page.tags  # type: ignore[union-attr]
            photometric = tags.get("PhotometricInterpretation")
            compression = tags.get("Compression")
            if photometric is None or photometric.value != _RGB:
                continue
            if compression is not None and compression.value == _JPEG:
                logger.info("%s is JPEG-compressed RGB; its photometric tag is kept", path)
                continue
            photometric.overwrite(_MINISBLACK)
            extra = tags.get("ExtraSamples")
            if extra is not None:
                count = len(extra.value) if isinstance(extra.value, tuple) else 1
                extra.overwrite((_EXTRASAMPLE_UNSPECIFIED,) * count)
            changed += 1
    return changed
