"""The one place where exceptions become HTTP answers: JSON, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from deepaas import exceptions as exc

__all__ = [
    "REALM",
    "RequestTimedOut",
    "RequestTooLarge",
    "answer_error",
    "bearer_challenge",
    "error_middleware",
    "json_error",
    "status_for",
]

_LOG = logging.getLogger(__name__)


class RequestTooLarge(exc.DeepaasError):
    """The request is larger than a configured limit.

    Args:
        message: What is too large, and the limit.
        field: The form field that broke the limit, if one did.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, field)
        self._ctor = (message, field)

    @property
    def field(self) -> str | None:
        """The form field that broke the limit, or ``None``."""
        field = self.args[1] if len(self.args) > 1 else None
        return field if isinstance(field, str) else None


class RequestTimedOut(exc.DeepaasError):
    """The client stopped sending the request body it had started."""


_STATUS: Mapping[type[exc.DeepaasError], HTTPStatus] = {
    exc.DeepaasError: HTTPStatus.INTERNAL_SERVER_ERROR,
    exc.ModelNotFound: HTTPStatus.NOT_FOUND,
    exc.JobNotFound: HTTPStatus.NOT_FOUND,
    exc.ModelMethodNotImplemented: HTTPStatus.NOT_IMPLEMENTED,
    exc.ArgumentError: HTTPStatus.UNPROCESSABLE_ENTITY,
    exc.MalformedRequest: HTTPStatus.BAD_REQUEST,
    exc.NotAcceptable: HTTPStatus.NOT_ACCEPTABLE,
    exc.UnsupportedMediaType: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    RequestTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    RequestTimedOut: HTTPStatus.REQUEST_TIMEOUT,
    exc.WorkerCrashed: HTTPStatus.INTERNAL_SERVER_ERROR,
    exc.Overloaded: HTTPStatus.SERVICE_UNAVAILABLE,
    exc.CallTimedOut: HTTPStatus.GATEWAY_TIMEOUT,
    exc.AuthenticationFailed: HTTPStatus.UNAUTHORIZED,
    exc.InsufficientScope: HTTPStatus.FORBIDDEN,
    exc.IdentityProviderUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}
# The protection space named in every Bearer challenge (RFC 6750, section 3).
REALM = "deepaas"


def status_for(error: exc.DeepaasError) -> HTTPStatus:
    """The HTTP status of a deepaas error: the nearest mapped class in its MRO."""
    return next(_STATUS[c] for c in type(error).__mro__ if c in _STATUS)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error answer ``{"message": ...}`` with ``extra`` keys."""
    return web.json_response({"message": message, **extra}, status=status)


def _from_deepaas(error: exc.DeepaasError) -> web.Response:
    status = status_for(error)
    if isinstance(error, exc.ArgumentError):
        # 2.x answered {"<location>": {"<field>": [messages]}}-like bodies keyed by
        # field; keep the field keys at the top level for such clients.
        messages = error.messages
        # Field keys come last so an argument named "message" keeps 2.x's shape.
        body = {"message": error.message, "errors": messages, **messages}
        return web.json_response(body, status=status)
    if isinstance(error, exc.Overloaded):
        _LOG.warning("%s", error.message)
        response = json_error(status, error.message)
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    if isinstance(error, exc.AuthenticationFailed | exc.InsufficientScope):
        response = json_error(status, error.message)
        response.headers["WWW-Authenticate"] = bearer_challenge(error)
        return response
    if isinstance(error, RequestTooLarge) and error.field is not None:
        return json_error(status, error.message, errors={error.field: [error.message]})
    if isinstance(error, RequestTimedOut):
        _LOG.warning("%s", error.message)
        response = json_error(status, error.message)
        # The rest of the body may never come: do not wait to read it.
        response.force_close()
        return response
    if status >= 500:
        _LOG.error("%s: %s", type(error).__name__, error.message)
    return json_error(status, error.message)


def bearer_challenge(error: exc.AuthenticationFailed | exc.InsufficientScope) -> str:
    """The ``WWW-Authenticate`` value for an authentication error (RFC 6750)."""
    params = {"realm": REALM}
    if isinstance(error, exc.InsufficientScope):
        params.update(error="insufficient_scope", scope=error.scope)
    elif error.error is not None:
        params.update(error=error.error, error_description=error.message)
    return "Bearer " + ", ".join(f"{k}={_quoted(v)}" for k, v in params.items())


def _quoted(value: str) -> str:
    # The values are ours, but a quoted-string must stay well-formed regardless.
    return '"' + value.replace("\\", "").replace('"', "") + '"'


def _from_http(error: web.HTTPException) -> web.StreamResponse:
    if error.status < 400 or error.content_type == "application/json":
        return error
    text = (
        error.text
        if error.text and not error.text.startswith(f"{error.status}:")
        else None
    )
    message = text or error.reason
    response = json_error(error.status, message)
    for name in ("Allow", "Retry-After", "WWW-Authenticate"):
        if name in error.headers:
            response.headers[name] = error.headers[name]
    return response


def answer_error(request: web.Request, error: Exception) -> web.StreamResponse:
    """The answer to ``request`` that failed with ``error``: JSON, with its status.

    Raises:
        web.HTTPException: ``error`` itself, when it is a redirect (below 400).
    """
    if isinstance(error, exc.DeepaasError):
        return _from_deepaas(error)
    if isinstance(error, web.HTTPException):
        if error.status < 400:
            raise error
        return _from_http(error)
    if isinstance(error, ConnectionResetError) and _client_gone(request):
        # The client hung up before its request was complete (a truncated
        # body): a client's doing, not worth an error and a traceback in the
        # log, and the answer will not reach anyone.
        _LOG.info("Client disconnected during %s %s", request.method, request.path)
        return json_error(400, "The client disconnected before the request ended")
    _LOG.error(
        "Unexpected error answering %s %s",
        request.method,
        request.path,
        exc_info=error,
    )
    return json_error(500, "Internal server error; the details are in the server log")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Answer every failure with a JSON body and the status its class maps to.

    The server does this in its one middleware (:mod:`deepaas.api.observe`),
    with :func:`answer_error`; this is the same as a middleware of its own.
    """
    try:
        return await handler(request)
    except Exception as error:
        return answer_error(request, error)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
