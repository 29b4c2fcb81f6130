"""Turn a model's argument fields into JSON Schemas and Swagger 2.0 parameters.

apispec does the field conversion; this module corrects what 2.x declarations make
it produce (``type="file"`` copied from metadata, non-JSON defaults) and shapes the
result for each document version. Field facts are read through
:mod:`deepaas.model._fields` only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import validate

from deepaas.model import _fields

if TYPE_CHECKING:
    from deepaas.model._fields import AnyField

__all__ = [
    "ACCEPT_DESCRIPTION",
    "Names",
    "clean_schema",
    "file_schema",
    "is_scalar",
    "openapi_accept",
    "query_parameter",
    "safe_name",
    "swagger_accept",
    "swagger_parameter",
    "value_schema",
]

ACCEPT_DESCRIPTION = "Media type(s) that is/are acceptable for the response."

_JSON_TYPES = frozenset(
    {"string", "number", "integer", "boolean", "array", "object", "null"}
)
_SCALARS = frozenset({"string", "number", "integer", "boolean"})
# What Swagger 2.0 allows on a non-body parameter and on its ``items``.
_PARAM_KEYS = frozenset(
    {
        "type",
        "format",
        "items",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "enum",
        "multipleOf",
    }
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_``."""
    return _UNSAFE.sub("_", text) or "_"


class Names:
    """Hands out unique, valid component names within one document."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def claim(self, wanted: str) -> str:
        """Reserve ``wanted`` (made safe), or ``wanted-2``, ``wanted-3``... if taken."""
        base = safe_name(wanted)
        name, counter = base, 1
        while name in self._used:
            counter += 1
            name = f"{base}-{counter}"
        self._used.add(name)
        return name

    def resolver(self, schema: Any) -> str:
        """Name a nested schema apispec meets (class name, without ``Schema``)."""
        cls = schema if isinstance(schema, type) else type(schema)
        name = cls.__name__
        if name.endswith("Schema") and len(name) > len("Schema"):
            name = name[: -len("Schema")]
        return self.claim(name)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _valid_type(value: Any) -> bool:
    if isinstance(value, str):
        return value in _JSON_TYPES
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, str) and v in _JSON_TYPES for v in value)
    )


def clean_schema(schema: Any) -> None:
    """Drop, in place and recursively, what 2.x metadata makes invalid in a schema.

    ``type`` values that are not JSON types (``"file"``), boolean ``required``,
    and keys apispec left as ``None``.
    """
    if isinstance(schema, list):
        for item in schema:
            clean_schema(item)
        return
    if not isinstance(schema, dict):
        return
    if "type" in schema and not _valid_type(schema["type"]):
        del schema["type"]
    if "required" in schema and not isinstance(schema["required"], list):
        del schema["required"]
    for key in [k for k, v in schema.items() if v is None and k != "default"]:
        del schema[key]
    for key in ("items", "additionalProperties", "not"):
        clean_schema(schema.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        clean_schema(schema.get(key))
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for value in properties.values():
            clean_schema(value)


def _ranges(field: AnyField) -> Iterable[validate.Range]:
    return (v for v in field.validators or [] if isinstance(v, validate.Range))


def _exclusive_bounds(schema: dict[str, Any], field: AnyField, openapi3: bool) -> None:
    # apispec writes every Range bound as inclusive.
    for rng in _ranges(field):
        for bound, inclusive, key in (
            (rng.min, getattr(rng, "min_inclusive", True), "minimum"),
            (rng.max, getattr(rng, "max_inclusive", True), "maximum"),
        ):
            if inclusive or bound is None or key not in schema:
                continue
            exclusive = "exclusive" + key[0].upper() + key[1:]
            if openapi3:
                schema[exclusive] = schema.pop(key)
            else:
                schema[exclusive] = True


def value_schema(converter: OpenAPIConverter, field: AnyField) -> dict[str, Any]:
    """The JSON Schema of a (non-file) argument's value, with its description.

    Args:
        converter: The converter of the document being built.
        field: The argument's field.
    """
    openapi3 = converter.openapi_version.major >= 3
    schema: dict[str, Any] = converter.field2property(field)
    if not _valid_type(schema.get("type")):
        # Metadata such as 2.x ``type="..."`` replaced the real type.
        computed = converter.field2type_and_format(field).get("type")
        if computed is None:
            schema.pop("type", None)
        elif openapi3 and field.allow_none:
            schema["type"] = [computed, "null"]
        else:
            schema["type"] = computed
    clean_schema(schema)
    if "default" in schema and not (
        _jsonable(schema["default"])
        and (schema["default"] is not None or (openapi3 and field.allow_none))
    ):
        del schema["default"]
    if "enum" in schema and not _jsonable(schema["enum"]):
        del schema["enum"]
    _exclusive_bounds(schema, field, openapi3)
    schema.pop("description", None)
    text = _fields.description(field)
    if text:
        schema["description"] = text
    return schema


def file_schema(field: AnyField) -> dict[str, Any]:
    """The OpenAPI 3.1 schema of an uploaded file, in a multipart body."""
    schema: dict[str, Any] = {
        "type": "string",
        "format": "binary",
        "contentMediaType": "application/octet-stream",
    }
    text = _fields.description(field)
    if text:
        schema["description"] = text
    return schema


def is_scalar(schema: dict[str, Any]) -> bool:
    """Whether a value schema fits a query string (a scalar or a list of scalars)."""
    types = schema.get("type")
    names = {types} if isinstance(types, str) else set(types or ())
    names.discard("null")
    if names <= _SCALARS and names:
        return True
    if names == {"array"}:
        items = schema.get("items") or {}
        return isinstance(items, dict) and is_scalar(items)
    return False


def _swagger_items(schema: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in schema.items() if k in _PARAM_KEYS or k.startswith("x-")}
    kind = kept.get("type")
    if kind == "array":
        inner = schema.get("items")
        kept["items"] = _swagger_items(inner if isinstance(inner, dict) else {})
        return kept
    if kind in _SCALARS:
        return kept
    # Objects and untyped values travel as text in a query string.
    return {"type": "string"}


def swagger_parameter(
    converter: OpenAPIConverter, name: str, field: AnyField
) -> dict[str, Any]:
    """A Swagger 2.0 parameter: files ``in: formData`` (``type: file``), others query.

    Args:
        converter: The converter of the 2.0 document.
        name: The argument name.
        field: The argument's field.
    """
    param: dict[str, Any] = {"in": "query", "name": name, "required": field.required}
    if _fields.is_file(field):
        param.update({"in": "formData", "type": "file"})
    else:
        value = value_schema(converter, field)
        shaped = _swagger_items(value)
        if shaped.get("type") != value.get("type"):
            shaped.pop("default", None)
        param.update(shaped)
        if shaped.get("type") == "array":
            param["collectionFormat"] = "multi"
    text = _fields.description(field)
    if text:
        param["description"] = text
    return param


def query_parameter(name: str, value: dict[str, Any]) -> dict[str, Any]:
    """An optional OpenAPI 3.1 query parameter for a value schema (see is_scalar)."""
    param: dict[str, Any] = {"in": "query", "name": name, "required": False}
    if "description" in value:
        param["description"] = value["description"]
    param["schema"] = {k: v for k, v in value.items() if k != "description"}
    if param["schema"].get("type") == "array":
        param.update({"style": "form", "explode": True})
    return param


def openapi_accept(choices: list[str], text: str) -> dict[str, Any]:
    """The OpenAPI 3.1 ``Accept`` header parameter of a model that declares ``accept``.

    Args:
        choices: The media types the model answers in, the default first.
        text: The argument's description (a generic one when empty).
    """
    schema = {"type": "string", "enum": choices, "default": choices[0]}
    return {
        "in": "header",
        "name": "Accept",
        "required": False,
        "description": text or ACCEPT_DESCRIPTION,
        "schema": schema,
    }


def swagger_accept(choices: list[str], text: str) -> dict[str, Any]:
    """The Swagger 2.0 ``accept`` header parameter, as 2.x wrote it.

    As 2.x, ``*/*`` is offered too (answered in JSON when the model offers it); the
    parameter's ``enum`` is also the operation's ``produces``.

    Args:
        choices: The media types the model answers in, the default first.
        text: The argument's description (a generic one when empty).
    """
    offered = choices if "*/*" in choices else [*choices, "*/*"]
    return {
        "in": "header",
        "name": "accept",
        "required": False,
        "type": "string",
        "default": choices[0],
        "enum": offered,
        "description": text or ACCEPT_DESCRIPTION,
    }
