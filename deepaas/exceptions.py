"""The exceptions deepaas raises, one tree, mapped to HTTP in ``deepaas.api.errors``.

::

    DeepaasError
    ├── ConfigurationError           invalid settings, found at start-up
    ├── ModelError
    │   ├── ModelNotFound            unknown model name (request or start-up)
    │   ├── ModelLoadError           an entry point failed to import
    │   ├── NoModelsAvailable        nothing installed in the namespace
    │   ├── ModelMethodNotImplemented  the model lacks the method
    │   ├── InvalidModelSchema       the declared response schema is unusable
    │   ├── InvalidModelResponse     the output does not match the declared schema
    │   └── ModelCallError           the model's own code raised
    ├── ArgumentError                invalid request arguments (messages by field)
    │   └── MalformedRequest         the body cannot be parsed (JSON, multipart)
    ├── NotAcceptable                the requested media type is not offered
    ├── UnsupportedMediaType         the request body type cannot be read
    ├── JobNotFound                  unknown training id
    ├── WorkerCrashed                a worker process died while running a call
    ├── Overloaded                   too many calls waiting; retry later
    ├── CallTimedOut                 a call ran past its time limit
    ├── AuthenticationFailed         no valid bearer token on a protected route
    ├── InsufficientScope            the token lacks the scope the route needs
    └── IdentityProviderUnavailable  the OIDC issuer's keys cannot be fetched

Every class keeps its state in ``args`` so it survives pickling across processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ArgumentError",
    "AuthenticationFailed",
    "CallTimedOut",
    "ConfigurationError",
    "DeepaasError",
    "IdentityProviderUnavailable",
    "InsufficientScope",
    "InvalidModelResponse",
    "InvalidModelSchema",
    "JobNotFound",
    "MalformedRequest",
    "ModelCallError",
    "ModelError",
    "ModelLoadError",
    "ModelMethodNotImplemented",
    "ModelNotFound",
    "NoModelsAvailable",
    "NotAcceptable",
    "Overloaded",
    "UnsupportedMediaType",
    "WorkerCrashed",
]


class DeepaasError(Exception):
    """Root of every error deepaas raises on purpose."""

    _ctor: tuple[Any, ...] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses whose constructor differs from ``args`` record what to call.
        return (type(self), self._ctor if self._ctor is not None else self.args)

    @property
    def message(self) -> str:
        """A short, client-safe description of the error."""
        return str(self.args[0]) if self.args else type(self).__name__


class ConfigurationError(DeepaasError):
    """The configuration is inconsistent or invalid."""


class ModelError(DeepaasError):
    """Something is wrong with a model or with a call to it."""


class ModelNotFound(ModelError):
    """No model of that name is served (or installed)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Model '{name}' not found", name)
        self._ctor = (name,)

    @property
    def name(self) -> str:
        """The name that was looked up."""
        return str(self.args[1])


class ModelLoadError(ModelError):
    """An entry point in the model namespace could not be loaded."""

    def __init__(self, name: str, cause: str) -> None:
        super().__init__(f"Model '{name}' could not be loaded: {cause}", name, cause)
        self._ctor = (name, cause)


class NoModelsAvailable(ModelError):
    """No model is installed in the ``deepaas.v2.model`` namespace."""


class ModelMethodNotImplemented(ModelError):
    """The model does not provide the requested method."""

    def __init__(self, name: str, method: str) -> None:
        super().__init__(f"Model '{name}' does not implement '{method}'", name, method)
        self._ctor = (name, method)


class InvalidModelSchema(ModelError):
    """The model's response ``schema`` is neither a dict of fields nor a Schema."""


class InvalidModelResponse(ModelError):
    """The model returned a value that does not match its response schema."""


class ModelCallError(ModelError):
    """The model's own code raised; the message is safe to show to a client."""


class ArgumentError(DeepaasError):
    """Request arguments failed validation.

    Args:
        messages: Messages keyed by argument name, as marshmallow reports them.
    """

    def __init__(self, messages: Mapping[str, Any]) -> None:
        names = ", ".join(sorted(str(k) for k in messages))
        super().__init__(f"Invalid arguments: {names}", dict(messages))
        self._ctor = (dict(messages),)

    @property
    def messages(self) -> dict[str, Any]:
        """The per-argument error messages."""
        return dict(self.args[1])


class MalformedRequest(ArgumentError):
    """The request body is not well-formed (invalid JSON, broken multipart).

    An :class:`ArgumentError` so clients get the same per-field body shape
    (2.x answered ``{"json": ["Invalid JSON body."]}`` with status 400).
    """


class NotAcceptable(DeepaasError):
    """The client asked for a media type the model does not produce."""


class UnsupportedMediaType(DeepaasError):
    """The request body has a content type deepaas cannot read."""


class JobNotFound(DeepaasError):
    """No training job has that id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Training '{job_id}' not found", job_id)
        self._ctor = (job_id,)


class WorkerCrashed(DeepaasError):
    """A worker process died while it was running a call."""


class Overloaded(DeepaasError):
    """Too many calls are already waiting for a model; the client should retry.

    Args:
        message: What is full.
        retry_after: Seconds the client should wait before retrying.
    """

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, retry_after)
        self._ctor = (message, retry_after)

    @property
    def retry_after(self) -> int:
        """Seconds to wait before retrying, for the ``Retry-After`` header."""
        return int(self.args[1])


class CallTimedOut(DeepaasError):
    """A call to a model ran past its time limit and was abandoned."""


class AuthenticationFailed(DeepaasError):
    """The request carries no valid bearer token for a route that needs one.

    Args:
        message: Why, safe to show to the client (never the token itself).
        error: The RFC 6750 error code (``"invalid_token"``), or ``None`` when no
            credentials were sent at all.
    """

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message, error)
        self._ctor = (message, error)

    @property
    def error(self) -> str | None:
        """The RFC 6750 error code for the ``WWW-Authenticate`` header."""
        return None if self.args[1] is None else str(self.args[1])


class InsufficientScope(DeepaasError):
    """The token is valid but lacks the scope the route needs.

    Args:
        scope: The scope the route needs.
    """

    def __init__(self, scope: str) -> None:
        super().__init__(f"This route needs a token with the '{scope}' scope", scope)
        self._ctor = (scope,)

    @property
    def scope(self) -> str:
        """The missing scope."""
        return str(self.args[1])


class IdentityProviderUnavailable(DeepaasError):
    """The keys of the OpenID Connect issuer cannot be fetched to check a token."""
