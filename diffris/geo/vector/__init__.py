"""Vector outputs: polygons of the masks, polygonised as the stitcher finishes rows.

Typical use::

    from diffris.geo.vector import VectorOptions, VectorSink

    with VectorSink("buildings.gpkg", spec, VectorOptions(min_area=20), model_id=model_id) as sink:
        for row_off, probs, valid in stitched_rows:
            sink.write_rows(row_off, probs, valid)
"""

from diffris.geo.vector.options import (
    VECTOR_EXTENSIONS,
    AreaUnit,
    VectorFormat,
    VectorOptions,
    is_vector_output,
    parse_min_area,
    require_vector_format,
    resolve_vector_format,
)
from diffris.geo.vector.polygonize import MaskPolygon, StreamingPolygonizer
from diffris.geo.vector.sink import VectorSink, check_vector_output
from diffris.geo.vector.writers import FIELDS

__all__ = [
    "FIELDS",
    "VECTOR_EXTENSIONS",
    "AreaUnit",
    "MaskPolygon",
    "StreamingPolygonizer",
    "VectorFormat",
    "VectorOptions",
    "VectorSink",
    "check_vector_output",
    "is_vector_output",
    "parse_min_area",
    "require_vector_format",
    "resolve_vector_format",
]
