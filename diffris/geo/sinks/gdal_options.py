"""Up-front validation of ``--co`` options for GDAL's GTiff and COG drivers.

GDAL ignores an unknown creation option or value with a mere warning, so ``--co COMPRES=ZSTD``
would silently write an uncompressed file, and a bad COG option would only fail at the final copy,
after the whole inference. :func:`probe_creation_options` therefore creates a tiny raster in
GDAL's in-memory filesystem with the same driver, data type and options, and turns any
complaint GDAL makes about them into one :class:`~diffris.errors.InputError`.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from diffris.errors import InputError

__all__ = ["probe_creation_options"]

#: rasterio forwards GDAL's warnings (CPLE_*) to this logger.
_GDAL_LOGGER = "rasterio._env"
_COMPLAINTS = ("creation option", "not recognised", "not supported", "unexpected value")


def probe_creation_options(
    driver: str, defaults: Mapping[str, str], user: Mapping[str, str], dtype: str
) -> None:
    """Create a 32 x 32 raster with ``driver`` and the options; raise if GDAL objects to ``user``.

    Args:
        driver: ``"GTiff"`` or ``"COG"`` (COG is probed by copying, as the sink does).
        defaults: the sink's own options (complaints about these alone are not the user's).
        user: the ``--co`` options, upper-case keys; they override ``defaults``.
        dtype: numpy dtype name of the output.

    Raises:
        InputError: GDAL rejected or ignored one of ``user``; the message names it.
    """
    options = {**defaults, **user}
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": dtype}
    failure = None
    with (
        _gdal_complaints() as complaints,
        warnings.catch_warnings(),
        MemoryFile(ext=".tif") as source,
        MemoryFile(ext=".tif") as target,
    ):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            create_options = options if driver == "GTiff" else {}
            with source.open(**profile, **create_options) as dataset:
                dataset.write(np.zeros((1, 32, 32), dtype=dtype))
            if driver == "COG":
                rasterio.shutil.copy(source.name, target.name, driver="COG", **options)
        except Exception as err:  # any GDAL failure here is caused by the options
            failure = re.sub(r"\S*(/vsimem/|\.tif:)\S*:? ?", "", str(err))
    mentioned = [c for c in complaints if any(k in c or f"'{v}'" in c for k, v in user.items())]
    reason = failure or (mentioned[0] if mentioned else None)
    if reason is not None:
        given = " ".join(f"--co {key}={value}" for key, value in user.items())
        reason = reason.rstrip(".")
        raise InputError(f"{given} rejected by GDAL's {driver} driver: {reason}")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(word in message for word in _COMPLAINTS):
            self.messages.append(message.removeprefix("CPLE_NotSupported in ").strip())


@contextmanager
def _gdal_complaints() -> Iterator[list[str]]:
    handler = _Collect()
    logger = logging.getLogger(_GDAL_LOGGER)
    level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:  # e.g. under -q: still hear GDAL's warnings
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
