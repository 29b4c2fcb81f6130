"""Cross-origin requests from browsers (CORS), for the configured origins only.

Installed only when origins are configured. A preflight (``OPTIONS`` with
``Origin`` and ``Access-Control-Request-Method``) is answered here, before any
authentication, since browsers never send credentials with it. Every other answer
to an allowed origin carries ``Access-Control-Allow-Origin``; answers to other
origins carry no CORS header, so browsers keep them from the page.

Tokens travel in the ``Authorization`` header, not in cookies, so credentials
(``Access-Control-Allow-Credentials``) are never allowed.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from deepaas.api.errors import json_error

__all__ = ["ALLOWED_METHODS", "EXPOSED_HEADERS", "MAX_AGE", "install"]

ALLOWED_METHODS = ("GET", "HEAD", "POST", "DELETE")
"""Methods the API uses, offered to allowed origins."""
EXPOSED_HEADERS = (
    "Content-Disposition",
    "Retry-After",
    "WWW-Authenticate",
    "X-Deepaas-Worker",
    "X-Request-Id",
)
"""Answer headers a page may read besides the CORS-safelisted ones."""
MAX_AGE = 600
"""Seconds a browser may reuse a preflight answer."""


class _Cors:
    def __init__(self, origins: Iterable[str]) -> None:
        self._origins = frozenset(origins)
        self._any = "*" in self._origins

    def allow(self, origin: str) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for ``origin``, if allowed."""
        if self._any:
            return "*"
        return origin if origin in self._origins else None

    @web.middleware
    async def preflight(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if (
            request.method != hdrs.METH_OPTIONS
            or origin is None
            or hdrs.ACCESS_CONTROL_REQUEST_METHOD not in request.headers
        ):
            return await handler(request)
        if self.allow(origin) is None:
            return json_error(403, f"Origin not allowed: {origin}")
        response = web.Response(status=204)
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ", ".join(ALLOWED_METHODS)
        asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS)
        if asked:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = asked
        response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(MAX_AGE)
        return response

    async def add_headers(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        if not self._any:
            _vary_on_origin(response)
        origin = request.headers.get(hdrs.ORIGIN)
        allowed = None if origin is None else self.allow(origin)
        if allowed is None:
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allowed
        if request.method != hdrs.METH_OPTIONS:
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(
                EXPOSED_HEADERS
            )


def _vary_on_origin(response: web.StreamResponse) -> None:
    # Answers differ by Origin: caches must not give one origin's to another.
    vary = response.headers.get(hdrs.VARY, "")
    names = [n.strip().lower() for n in vary.split(",") if n.strip()]
    if "origin" not in names and "*" not in names:
        response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"


def install(app: web.Application, origins: Iterable[str]) -> None:
    """Answer preflights and add CORS headers for ``origins`` (``*``: any).

    The preflight middleware goes first, before authentication.
    """
    cors = _Cors(origins)
    app.middlewares.insert(0, cors.preflight)
    app.on_response_prepare.append(cors.add_headers)
