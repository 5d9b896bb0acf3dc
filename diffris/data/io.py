"""Reading benchmark files: 8-bit images and masks (PNG, JPEG, TIFF) and listed-file checks."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from diffris.errors import DatasetFormatError


def missing_files(root: Path, relatives: Sequence[str]) -> list[str]:
    """The entries of ``relatives`` (``/``-separated, under ``root``) that do not exist.

    Lists each folder once instead of one ``stat`` per file: tens of thousands of files are
    checked in well under a second, even on network file systems.
    """
    listings: dict[str, set[str]] = {}
    missing = []
    for relative in relatives:
        folder, _, name = relative.rpartition("/")
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(root / folder))
            except (FileNotFoundError, NotADirectoryError):
                listings[folder] = set()
        if name not in listings[folder]:
            missing.append(relative)
    return missing


#: Mask pixels above this value are the object (the reference loaders' rule).
MASK_THRESHOLD = 50
_TIFF_SUFFIXES = (".tif", ".tiff")


def read_rgb(path: Path) -> np.ndarray:
    """Read an 8-bit image as RGB.

    Grey images are repeated to three channels, alpha is dropped, palettes are applied.

    Returns:
        (H, W, 3) uint8.

    Raises:
        DatasetFormatError: unreadable, not 8-bit, or a channel count that is not 1-4.
    """
    array = read_channels(path)
    if array.dtype == bool:  # bilevel
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise DatasetFormatError(
            f"{path} is a {array.dtype} image; the benchmarks use 8-bit RGB images"
        )
    channels = array.shape[2]
    if channels in (1, 2):  # grey, grey + alpha
        return np.repeat(array[:, :, :1], 3, axis=2)
    if channels in (3, 4):  # RGB, RGB + alpha
        return np.ascontiguousarray(array[:, :, :3])
    raise DatasetFormatError(f"{path} has {channels} bands; expected an RGB or grey image")


def read_mask(path: Path) -> np.ndarray:
    """Read a mask image and binarise it: True where a pixel is > :data:`MASK_THRESHOLD`.

    Masks stored with colour channels (RGB, or a palette) count a pixel as object when any
    colour channel is > 50, so white-on-black and colour-on-black masks both work; alpha is
    ignored. Bilevel (1-bit) masks map to 0/255 first.

    Returns:
        (H, W) bool.
    """
    array = read_channels(path)
    if array.dtype == bool:
        return array[:, :, 0].copy()
    channels = array.shape[2]
    colour = array[:, :, : 1 if channels == 2 else 3]  # drop alpha
    return np.asarray((colour > MASK_THRESHOLD).any(axis=2))


#: The most pixels of a benchmark image (8192 x 8192); the benchmarks' are 512² to 800². The
#: header of a small file can claim any size, and decoding would allocate it all.
MAX_PIXELS = 1 << 26


def _check_size(path: Path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise DatasetFormatError(
            f"{path} claims {width}x{height} px, more than the {MAX_PIXELS} pixels a benchmark "
            "image may have; is it the right file?"
        )


def read_channels(path: Path) -> np.ndarray:
    """(H, W, C) pixels; palettes resolved to RGB; alpha, if any, last."""
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return _read_with_rasterio(path)
    try:
        with warnings.catch_warnings():
            # PIL's own bomb warning fires above 89 M px; _check_size refuses from 67 M px.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened:
            image: Image.Image = opened
            _check_size(path, image.width, image.height)
            if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGBA" if image.mode == "PA" else "RGB")
            array = np.asarray(image)
    except DatasetFormatError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # Unidentified: OSError
        raise DatasetFormatError(f"{path} is not a readable image: {err}") from err
    return array[:, :, None] if array.ndim == 2 else array


def _read_with_rasterio(path: Path) -> np.ndarray:
    """TIFFs through GDAL, which reads every TIFF flavour (tiled, BigTIFF, JPEG/ZSTD/LZW)."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as source:
                _check_size(path, source.width, source.height)
                bands = source.read()
                interpretation = source.colorinterp
                colormap = (
                    source.colormap(1)
                    if source.count == 1 and interpretation[0] == ColorInterp.palette
                    else None
                )
    except RasterioIOError as err:
        raise DatasetFormatError(f"{path} is not a readable TIFF: {err}") from err
    if colormap is not None:
        table = np.zeros((max(int(bands.max()), max(colormap)) + 1, 3), np.uint8)
        for value, rgba in colormap.items():
            table[value] = rgba[:3]
        return table[bands[0]]
    keep = [i for i, kind in enumerate(interpretation) if kind != ColorInterp.alpha]
    alpha = [i for i, kind in enumerate(interpretation) if kind == ColorInterp.alpha]
    return np.moveaxis(bands[keep + alpha], 0, 2)
