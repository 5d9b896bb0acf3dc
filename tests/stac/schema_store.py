"""Offline STAC validation: the vendored core schemas (see schemas/SOURCE.md) in a local
``referencing`` registry, and the extension fields diffris writes checked against rules written
from the projection v2.0.0, raster v1.1.0 and file v2.1.0 field tables (no PyPI package ships
those schemas)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent / "schemas"
_STAC = "https://schemas.stacspec.org/v1.1.0"
_ITEM_PARTS = (
    "item",
    "bands",
    "basics",
    "common",
    "data-values",
    "datetime",
    "instrument",
    "licensing",
    "provider",
)

_NUMBER_OR_NODATA = {
    "oneOf": [{"type": "number"}, {"enum": ["nan", "inf", "-inf"]}],
}
#: The extension fields an output item carries, with the types and ranges the specs give.
EXTENSION_RULES: dict[str, Any] = {
    "type": "object",
    "required": ["properties", "assets"],
    "properties": {
        "properties": {
            "type": "object",
            "required": ["proj:code", "proj:transform", "proj:shape"],
            "properties": {
                "proj:code": {"type": ["string", "null"], "pattern": "^[A-Z]+:[0-9A-Za-z.]+$"},
                "proj:wkt2": {"type": ["string", "null"], "minLength": 1},
                "proj:transform": {
                    "type": "array",
                    "oneOf": [{"minItems": 6, "maxItems": 6}, {"minItems": 9, "maxItems": 9}],
                    "items": {"type": "number"},
                },
                "proj:shape": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 2,
                    "items": {"type": "integer", "minimum": 1},
                },
                "proj:bbox": {
                    "type": "array",
                    "oneOf": [{"minItems": 4, "maxItems": 4}, {"minItems": 6, "maxItems": 6}],
                    "items": {"type": "number"},
                },
            },
        },
        "assets": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "raster:bands": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "nodata": _NUMBER_OR_NODATA,
                                "scale": {"type": "number"},
                                "offset": {"type": "number"},
                                "data_type": {
                                    "enum": [
                                        "int8",
                                        "int16",
                                        "int32",
                                        "int64",
                                        "uint8",
                                        "uint16",
                                        "uint32",
                                        "uint64",
                                        "float16",
                                        "float32",
                                        "float64",
                                        "cint16",
                                        "cint32",
                                        "cfloat32",
                                        "cfloat64",
                                        "other",
                                    ]
                                },
                            },
                        },
                    },
                    "file:size": {"type": "integer", "minimum": 0},
                    # a multihash: hex, code and length bytes first
                    "file:checksum": {"type": "string", "pattern": "^[0-9a-f]+$"},
                },
            },
        },
    },
}


@cache
def registry() -> Registry:
    """Every vendored schema under the URI the STAC schemas reference it by."""
    resources = {
        f"{_STAC}/item-spec/json-schema/{name}.json": _resource(f"{name}.json")
        for name in _ITEM_PARTS
    }
    resources[f"{_STAC}/catalog-spec/json-schema/catalog.json"] = _resource("catalog.json")
    resources[f"{_STAC}/collection-spec/json-schema/collection.json"] = _resource("collection.json")
    for name in ("Feature", "Geometry"):
        resources[f"https://geojson.org/schema/{name}.json"] = _resource(f"geojson-{name}.json")
    return Registry().with_resources(resources.items())


def _resource(name: str) -> Resource:
    return Resource.from_contents(json.loads((SCHEMAS / name).read_text()))


def core_validator(kind: str = "item") -> Draft7Validator:
    """The STAC 1.1.0 ``item`` or ``catalog`` schema, resolving ``$ref`` only in the registry."""
    spec = "item-spec" if kind == "item" else f"{kind}-spec"
    schema = json.loads((SCHEMAS / f"{kind}.json").read_text())
    assert schema["$id"] == f"{_STAC}/{spec}/json-schema/{kind}.json"
    return Draft7Validator(schema, registry=registry())


def validate_item(document: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` is a valid diffris item."""
    core_validator("item").validate(document)
    Draft7Validator(EXTENSION_RULES).validate(document)
