"""Read what a model's argument declarations mean, whatever marshmallow idiom they use.

2.x modules put ``description``, ``type="file"``, ``location`` and ``enum`` as free
keywords (marshmallow 3 stores them in ``field.metadata``); modern modules pass
``metadata={...}``. Every reader of those facts goes through this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import marshmallow
from marshmallow import fields, validate

__all__ = [
    "FieldMap",
    "choices",
    "default",
    "description",
    "is_file",
    "location",
    "meta",
    "to_field_map",
]

if TYPE_CHECKING:
    AnyField = fields.Field[Any]
else:
    AnyField = fields.Field

FieldMap = dict[str, AnyField]


def meta(field: AnyField) -> Mapping[str, Any]:
    """The field's free-form metadata, whichever way it was declared."""
    return field.metadata or {}


def description(field: AnyField) -> str:
    """The human description of an argument, or an empty string."""
    return str(meta(field).get("description") or "")


def is_file(field: AnyField) -> bool:
    """Whether the argument is an uploaded file (2.x: ``type="file"``)."""
    return meta(field).get("type") == "file"


def location(field: AnyField) -> str | None:
    """The declared location (``form``, ``query``, ``headers``...), if any."""
    value = meta(field).get("location")
    return str(value) if value else None


def choices(field: AnyField) -> list[Any] | None:
    """Allowed values, from ``validate.OneOf`` or a declared ``enum``."""
    validators = field.validators or []
    for validator in validators:
        if isinstance(validator, validate.OneOf):
            return list(validator.choices)
    enum = meta(field).get("enum")
    return list(enum) if enum else None


def default(field: AnyField) -> Any:
    """The value used when the argument is absent (``marshmallow.missing`` if none)."""
    value = field.load_default
    return value() if callable(value) else value


def to_field_map(declared: Any, what: str) -> FieldMap:
    """Normalise ``get_predict_args()``/``get_train_args()`` output to a dict of fields.

    Accepts ``None``, a dict of fields, a Schema subclass or a Schema instance.

    Raises:
        TypeError: When ``declared`` is none of those, naming ``what``.
    """
    if declared is None:
        return {}
    if isinstance(declared, type) and issubclass(declared, marshmallow.Schema):
        declared = declared()
    if isinstance(declared, marshmallow.Schema):
        return dict(declared.fields)
    if isinstance(declared, Mapping):
        result: FieldMap = {}
        for name, field in declared.items():
            if isinstance(field, type) and issubclass(field, fields.Field):
                field = field()
            if not isinstance(field, fields.Field):
                raise TypeError(
                    f"{what}: argument {name!r} is {type(field).__name__}, "
                    "not a marshmallow field"
                )
            result[str(name)] = field
        return result
    raise TypeError(
        f"{what} must return a dict of marshmallow fields or a Schema, "
        f"got {type(declared).__name__}"
    )
