"""Adapt any object that follows the model contract to one typed interface.

Also home of :class:`UploadedFile` and :class:`ReturnedFile`, at their 2.x import path.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import marshmallow

from deepaas.exceptions import (
    InvalidModelResponse,
    InvalidModelSchema,
    ModelCallError,
    ModelError,
    ModelMethodNotImplemented,
)
from deepaas.model import _fields
from deepaas.model.v2.base import BaseModel

__all__ = ["ModelWrapper", "ReturnedFile", "UploadedFile"]

_LOG = logging.getLogger(__name__)

# BaseModel's own defaults that only raise NotImplementedError: not "provided".
_STUBS = {
    m: vars(BaseModel)[m] for m in ("get_metadata", "predict", "predict_batch", "train")
}

ACCEPT = "accept"
JSON = "application/json"


class UploadedFile(NamedTuple):
    """An uploaded file, handed to ``predict``/``train`` in place of its field.

    The file lives at :attr:`filename` until the call returns (trainings: until the
    job ends); copy it if you need it longer.
    """

    name: str | None = None
    """Name of the argument the file was sent as."""
    filename: str | None = None
    """Path of the temporary file holding the content."""
    content_type: str | None = None
    """Media type declared by the client."""
    original_filename: str | None = None
    """File name given by the client (never used as a path by deepaas)."""


class ReturnedFile(NamedTuple):
    """A file returned by ``predict``, sent to the client with its media type."""

    name: str | None = None
    """A name for the result (used as the download file name when set)."""
    filename: str | None = None
    """Path of the file to send."""
    content_type: str | None = None
    """Media type of the file; the negotiated ``accept`` type when ``None``."""
    original_filename: str | None = None
    """Unused; kept for 2.x compatibility."""


class ModelWrapper:
    """One served model: its declarations, read once, and guarded calls to it.

    Args:
        name: The name the model is served under (its entry-point name).
        model: The module, class instance or object implementing the contract.
        target: ``"module:attribute"`` that re-creates ``model`` in another process.

    Raises:
        InvalidModelSchema: The model's ``schema`` or argument declarations are
            not usable.
    """

    def __init__(self, name: str, model: Any, *, target: str | None = None) -> None:
        self.name = name
        self.model = model
        self.target = target
        self.predict_fields = self._declared("get_predict_args")
        self.train_fields = self._declared("get_train_args")
        self.response_schema = _response_schema(name, getattr(model, "schema", None))
        self.accept_choices = _accept_choices(self.predict_fields)

    def __repr__(self) -> str:
        return f"<ModelWrapper {self.name!r} {self.target or self.model!r}>"

    # Declarations -------------------------------------------------------------

    def _declared(self, method: str) -> _fields.FieldMap:
        func = getattr(self.model, method, None)
        if func is None:
            return {}
        try:
            declared = func()
        except NotImplementedError:
            return {}
        try:
            return _fields.to_field_map(declared, f"{self.name}.{method}()")
        except TypeError as exc:
            raise InvalidModelSchema(str(exc)) from exc

    def has(self, method: str) -> bool:
        """Whether the model provides ``method`` (BaseModel's stubs do not count)."""
        func = getattr(self.model, method, None)
        if not callable(func):
            return False
        return getattr(func, "__func__", func) is not _STUBS.get(method)

    def is_async(self, method: str) -> bool:
        """Whether ``method`` is a coroutine function, to be awaited directly."""
        return inspect.iscoroutinefunction(getattr(self.model, method, None))

    def metadata(self) -> dict[str, Any]:
        """The model's metadata, or a placeholder when it declares none (as 2.x)."""
        try:
            meta = self.call("get_metadata")
        except ModelMethodNotImplemented:
            return {
                "name": self.name,
                "description": (
                    "Could not load description from underlying model "
                    f"(loaded '{self.name}')"
                ),
            }
        if not isinstance(meta, Mapping):
            raise InvalidModelResponse(
                f"Model '{self.name}' get_metadata() returned "
                f"{type(meta).__name__}, not a dict"
            )
        return dict(meta)

    # Calls --------------------------------------------------------------------

    def _method(self, method: str) -> Callable[..., Any]:
        if not self.has(method):
            raise ModelMethodNotImplemented(self.name, method)
        return getattr(self.model, method)  # type: ignore[no-any-return]

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` synchronously, translating failures to deepaas errors.

        A coroutine function returns its coroutine, for the caller to await
        through :meth:`finish`.

        Raises:
            ModelMethodNotImplemented: The model lacks the method, or it raised
                ``NotImplementedError``.
            ModelCallError: The model's code raised; the traceback is logged.
        """
        func = self._method(method)
        try:
            return func(*args, **kwargs)
        except NotImplementedError:
            raise ModelMethodNotImplemented(self.name, method) from None
        except Exception as exc:
            raise self._failure(method, exc) from exc

    async def finish(self, method: str, pending: Any) -> Any:
        """Await the coroutine returned by :meth:`call` for an async ``method``."""
        try:
            return await pending
        except NotImplementedError:
            raise ModelMethodNotImplemented(self.name, method) from None
        except Exception as exc:
            raise self._failure(method, exc) from exc

    def batch_results(self, result: Any) -> list[Any]:
        """Check what ``predict_batch`` returned; map its exception elements.

        An element that is an exception becomes the deepaas error ``predict``
        raising it would have given (logged with the model's name), so that it
        fails one request only.

        Raises:
            InvalidModelResponse: ``result`` is not a sequence of results.
        """
        if isinstance(result, (str, bytes, bytearray, Mapping)) or not (
            isinstance(result, Iterable) and hasattr(result, "__len__")
        ):
            raise InvalidModelResponse(
                f"Model '{self.name}' predict_batch() returned "
                f"{type(result).__name__}, not a list with one result per request"
            )
        return [
            self._item_failure(i, r) if isinstance(r, Exception) else r
            for i, r in enumerate(result)
        ]

    def _item_failure(self, index: int, exc: Exception) -> ModelError:
        if isinstance(exc, NotImplementedError):
            return ModelMethodNotImplemented(self.name, "predict")
        _LOG.error(
            "Model %r predict_batch() returned an error for request %d of the batch",
            self.name,
            index,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return ModelCallError(f"Model '{self.name}' predict() failed: {_describe(exc)}")

    def _failure(self, method: str, exc: Exception) -> ModelCallError:
        _LOG.error(
            "Model %r raised in %s()",
            self.name,
            method,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return ModelCallError(
            f"Model '{self.name}' {method}() failed: {_describe(exc)}"
        )

    def warm(self) -> None:
        """Call the model's ``warm()`` if it has one."""
        if not self.has("warm"):
            _LOG.debug("Model %r has no warm()", self.name)
            return
        try:
            self.call("warm")
        except ModelMethodNotImplemented:
            _LOG.debug("Model %r does not implement warm()", self.name)

    def validate_response(self, value: Any) -> None:
        """Check a JSON result against the model's response schema, if it has one.

        Raises:
            InvalidModelResponse: The value does not match, naming the fields.
        """
        if self.response_schema is None:
            return
        try:
            self.response_schema().load(value)
        except marshmallow.ValidationError as exc:
            _LOG.error(
                "Model %r returned an invalid response: %s", self.name, exc.messages
            )
            raise InvalidModelResponse(
                f"Model '{self.name}' returned a response that does not match its "
                f"schema: {exc.messages}"
            ) from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:500]}" if text else type(exc).__name__


def _response_schema(name: str, schema: Any) -> type[marshmallow.Schema] | None:
    if schema is None:
        return None
    if isinstance(schema, marshmallow.Schema):
        return type(schema)
    if isinstance(schema, type) and issubclass(schema, marshmallow.Schema):
        return schema
    if isinstance(schema, Mapping):
        try:
            fields = _fields.to_field_map(schema, f"{name}.schema")
            return marshmallow.Schema.from_dict(fields, name="ModelPredictionResponse")
        except (TypeError, ValueError) as exc:
            raise InvalidModelSchema(
                f"Model '{name}' schema is invalid: {exc}"
            ) from exc
    raise InvalidModelSchema(
        f"Model '{name}' schema must be a dict of fields or a marshmallow Schema, "
        f"got {type(schema).__name__}"
    )


def _accept_choices(fields: _fields.FieldMap) -> list[str] | None:
    field = fields.get(ACCEPT)
    if field is None:
        return None
    options = _fields.choices(field)
    if options:
        return [str(o) for o in options]
    default = _fields.default(field)
    return [str(default)] if isinstance(default, str) else [JSON]
