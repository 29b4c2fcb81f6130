"""Schemas of the JSON answers of the API, as the documents describe them.

They document answers; the handlers build the bodies themselves. Every schema
works under marshmallow 3.13+ and 4 (metadata is passed as ``metadata={...}``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import EXCLUDE, INCLUDE, Schema, fields, validate

from deepaas.jobs.store import JobStatus
from deepaas.model._compat import HAS_ENUM_FIELD

if TYPE_CHECKING:
    from deepaas.model._fields import AnyField

__all__ = [
    "Failure",
    "Location",
    "ModelList",
    "ModelMeta",
    "Prediction",
    "Training",
    "TrainingList",
    "ValidationFailure",
    "Version",
    "Versions",
]


_LOCAL = " (ISO 8601, server local time)"


def _doc(text: str) -> dict[str, Any]:
    return {"description": text}


class _Answer(Schema):
    # EXCLUDE: the documents then neither forbid nor promise extra keys.
    class Meta:
        unknown = EXCLUDE


class Location(_Answer):
    """A link to a related resource."""

    rel = fields.Str(required=True, metadata=_doc("Relation to this resource"))
    href = fields.Str(required=True, metadata=_doc("Path of the resource"))
    type = fields.Str(metadata=_doc("Media type of the resource"))


class Version(_Answer):
    """One version of the API."""

    version = fields.Str(required=True, metadata=_doc("Stability of the version"))
    id = fields.Str(required=True, metadata=_doc("Version identifier, e.g. v2"))
    links = fields.List(fields.Nested(Location), metadata=_doc("Related resources"))
    type = fields.Str(metadata=_doc("Media type of the version document"))


class Versions(_Answer):
    """The API versions served, and where the documentation lives."""

    versions = fields.List(fields.Nested(Version), required=True)
    links = fields.List(
        fields.Nested(Location), metadata=_doc("Documentation and specification")
    )


class Failure(_Answer):
    """An error answer."""

    message = fields.Str(required=True, metadata=_doc("What went wrong"))


class ValidationFailure(Schema):
    """Invalid arguments (422).

    As in 2.x, the messages are also repeated at the top level, keyed by argument,
    hence the extra keys.
    """

    class Meta:
        """Extra keys are part of the answer."""

        unknown = INCLUDE

    message = fields.Str(required=True, metadata=_doc("Summary of the failure"))
    errors = fields.Dict(
        keys=fields.Str(),
        values=fields.Raw(),
        required=True,
        metadata=_doc(
            "Messages by argument name: a list of messages, or for list and "
            "dict arguments, lists keyed by the position or key at fault"
        ),
    )


class Prediction(_Answer):
    """A JSON prediction of a model that declares no response schema."""

    status = fields.Str(required=True, metadata=_doc("Always OK"))
    predictions = fields.Raw(
        required=True, metadata=_doc("Whatever the model's predict() returned")
    )


class ModelMeta(Schema):
    """A served model: the metadata it declares, with any extra keys it adds."""

    class Meta:
        """Extra keys are part of the answer."""

        unknown = INCLUDE

    id = fields.Str(required=True, metadata=_doc("Model identifier"))
    name = fields.Str(required=True, metadata=_doc("Model name"))
    description = fields.Str(metadata=_doc("Model description"))
    license = fields.Str(metadata=_doc("Model license"))
    author = fields.Str(metadata=_doc("Model author"))
    version = fields.Str(metadata=_doc("Model version"))
    url = fields.Str(metadata=_doc("Model URL"))
    links = fields.List(fields.Nested(Location), metadata=_doc("Related resources"))


class ModelList(_Answer):
    """Every served model."""

    models = fields.List(fields.Nested(ModelMeta), required=True)


def _status_field() -> AnyField:
    text = _doc("State of the training")
    if HAS_ENUM_FIELD:
        return fields.Enum(JobStatus, by_value=fields.Str, required=True, metadata=text)
    # marshmallow < 3.18 has no Enum field.
    return fields.Str(
        required=True,
        validate=validate.OneOf([s.value for s in JobStatus]),
        metadata=text,
    )


class Progress(_Answer):
    """What a model last reported with ``deepaas.model.progress.report``."""

    fraction = fields.Float(
        allow_none=True, metadata=_doc("Share of the work done, from 0 to 1")
    )
    message = fields.Str(allow_none=True, metadata=_doc("The current step"))
    metrics = fields.Dict(
        keys=fields.Str(),
        values=fields.Float(),
        metadata=_doc("Numbers reported with it (loss, accuracy...)"),
    )


class Training(_Answer):
    """The record of one training."""

    uuid = fields.Str(required=True, metadata=_doc("Training identifier (hex)"))
    date = fields.Str(
        required=True,
        metadata=_doc("When the training was accepted, as 2.x wrote it (local time)"),
    )
    status = _status_field()
    args = fields.Dict(
        required=True, metadata=_doc("Arguments of the training, files described")
    )
    message = fields.Str(metadata=_doc("Why the training failed or was stopped"))
    result = fields.Raw(
        metadata=_doc(
            "Once done: output (what train() returned), finish_date and duration"
        )
    )
    model = fields.Str(metadata=_doc("Name of the model trained"))
    # ISO 8601 text without a UTC offset (server local time), so not an RFC 3339
    # "date-time": the documents must not promise a format the answers break.
    created = fields.Str(metadata=_doc(f"When the training was accepted{_LOCAL}"))
    started = fields.Str(
        allow_none=True, metadata=_doc(f"When the training began to run{_LOCAL}")
    )
    finished = fields.Str(
        allow_none=True,
        metadata=_doc(f"When the training ended, whatever the outcome{_LOCAL}"),
    )
    duration = fields.Float(
        allow_none=True, metadata=_doc("Seconds spent running, once finished")
    )
    progress = fields.Nested(
        Progress,
        allow_none=True,
        metadata=_doc("The latest progress the model reported, if any"),
    )


class TrainingList(Training):
    """The trainings of a model: a bare JSON list of :class:`Training` records.

    Instances dump lists (``many`` defaults to true); the documents describe it as
    an array of ``Training``.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("many", True)
        super().__init__(**kwargs)
