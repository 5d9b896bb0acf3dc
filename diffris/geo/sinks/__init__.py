"""Sinks: the output end of the inference path (GeoTIFF, COG, Zarr), written atomically.

Typical use by the orchestrator::

    from diffris.geo.sinks import OutputSpec, check_output, open_sink, resolve_format

    fmt = resolve_format(output, requested)        # before any work: bad extension -> InputError
    check_output(output, overwrite)                # exists / unwritable -> one-line error
    spec = OutputSpec(width=..., height=..., crs=..., transform=..., prompts=prompts, ...)
    with open_sink(output, spec, format=fmt, overwrite=overwrite) as sink:
        for row_off, rows in stitcher:             # (P, rows, width), encoded (spec.encode)
            sink.write_rows(row_off, rows)
    # published on a clean exit; nothing at ``output`` if anything raised or the process died
"""

from __future__ import annotations

from pathlib import Path

from diffris.errors import InputError
from diffris.geo.sinks.base import Sink
from diffris.geo.sinks.cog import CogSink
from diffris.geo.sinks.geotiff import GeoTiffSink
from diffris.geo.sinks.publish import check_output, clean_stale_partials
from diffris.geo.sinks.spec import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_THRESHOLD,
    OutputDtype,
    OutputFormat,
    OutputSpec,
    OutputType,
    parse_creation_options,
    shift_gcps,
)
from diffris.geo.sinks.zarr import ZarrSink

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_THRESHOLD",
    "EXTENSIONS",
    "CogSink",
    "GeoTiffSink",
    "OutputDtype",
    "OutputFormat",
    "OutputSpec",
    "OutputType",
    "Sink",
    "ZarrSink",
    "check_georeferencing",
    "check_output",
    "clean_stale_partials",
    "open_sink",
    "parse_creation_options",
    "resolve_format",
    "shift_gcps",
]

#: Output name endings and the format each implies (longest match first).
EXTENSIONS: dict[str, OutputFormat] = {
    ".cog.tif": OutputFormat.COG,
    ".cog.tiff": OutputFormat.COG,
    ".tif": OutputFormat.GTIFF,
    ".tiff": OutputFormat.GTIFF,
    ".zarr": OutputFormat.ZARR,
}
_SINKS: dict[OutputFormat, type[Sink]] = {
    OutputFormat.GTIFF: GeoTiffSink,
    OutputFormat.COG: CogSink,
    OutputFormat.ZARR: ZarrSink,
}


def resolve_format(path: str | Path, format: OutputFormat | str | None = None) -> OutputFormat:
    """The output format: ``format`` if given, else from the name's ending (see EXTENSIONS).

    Raises:
        InputError: unknown ``format``, or no ``format`` and an unknown extension.
    """
    if format is not None:
        try:
            return OutputFormat(format)
        except ValueError as err:
            valid = ", ".join(f.value for f in OutputFormat)
            raise InputError(f"--format {format!r} is not one of {valid}") from err
    name = Path(path).name.lower()
    for ending, fmt in EXTENSIONS.items():
        if name.endswith(ending):
            return fmt
    raise InputError(
        f"cannot tell the output format of {path}: use one of the extensions "
        f"{', '.join(EXTENSIONS)} or pass --format ({', '.join(f.value for f in OutputFormat)})"
    )


def check_georeferencing(path: str | Path, format: OutputFormat, *, has_gcps: bool) -> None:
    """Refuse a format that cannot carry the scene's georeferencing (GCPs: GeoTIFF/COG only).

    Raises:
        InputError: GCPs and a Zarr output; the message gives the two ways out.
    """
    if has_gcps and format is OutputFormat.ZARR:
        raise InputError(
            f"cannot write {path}: the scene is georeferenced by GCPs only, which a Zarr store "
            "cannot carry; write a GeoTIFF/COG (-o masks.tif) or warp the scene first "
            "(gdalwarp -t_srs EPSG:<code> scene.tif warped.tif)"
        )


def open_sink(
    path: str | Path,
    spec: OutputSpec,
    *,
    format: OutputFormat | str | None = None,
    overwrite: bool = False,
) -> Sink:
    """A sink for ``path``; use it as a context manager (``with open_sink(...) as sink``).

    Nothing is created until the ``with`` block (or :meth:`Sink.open`) starts; the format and
    its creation options are validated here.

    Args:
        path: output file (.tif, .tiff, .cog.tif) or Zarr store (.zarr).
        spec: size, georeferencing, prompts, encoding, tags and creation options.
        format: overrides the format implied by the extension.
        overwrite: replace an existing output when the new one is complete.

    Raises:
        InputError: unknown format or extension, bad creation options, or GCPs for Zarr.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputNotWritableError: its folder cannot be written.
    """
    fmt = resolve_format(path, format)
    check_georeferencing(path, fmt, has_gcps=spec.gcps is not None)
    check_output(path, overwrite)
    return _SINKS[fmt](path, spec, overwrite=overwrite)
