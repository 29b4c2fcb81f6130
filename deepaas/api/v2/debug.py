"""``GET /v2/debug/``: what the server printed and logged, for a model author.

The capture is installed for the application's lifetime by :func:`capture` and
removed when it stops; nothing is replaced at import.
"""

from __future__ import annotations

import collections
import io
import logging
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from aiohttp import web

from deepaas.api.security.access import Scope, requires

__all__ = ["DEBUG_BUFFER", "capture", "routes"]

_MAX_LINES = 10_000
DEBUG_BUFFER: web.AppKey[collections.deque[str]] = web.AppKey("deepaas_debug_buffer")

routes = web.RouteTableDef()


class _Tee(io.TextIOBase):
    """Writes to the original stream and keeps a copy of the lines."""

    def __init__(self, stream: TextIO, buffer: collections.deque[str]) -> None:
        self._stream = stream
        self._buffer = buffer

    def write(self, text: str) -> int:
        self._buffer.extend(text.splitlines(keepends=True))
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


class _BufferHandler(logging.Handler):
    def __init__(self, buffer: collections.deque[str]) -> None:
        super().__init__()
        self._buffer = buffer
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )

    def emit(self, record: logging.LogRecord) -> None:
        self._buffer.append(self.format(record) + "\n")


async def capture(app: web.Application) -> AsyncIterator[None]:
    """Capture stdout, stderr and logs while the application runs."""
    buffer: collections.deque[str] = collections.deque(maxlen=_MAX_LINES)
    app[DEBUG_BUFFER] = buffer
    handler = _BufferHandler(buffer)
    root = logging.getLogger()
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = _Tee(old_out, buffer)
    sys.stderr = _Tee(old_err, buffer)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        sys.stdout, sys.stderr = old_out, old_err


@routes.get("/debug/", allow_head=False)
@requires(Scope.ADMIN)
async def debug(request: web.Request) -> web.Response:
    """Return the captured output as plain text."""
    buffer: collections.deque[str] = request.app[DEBUG_BUFFER]
    return web.Response(text="".join(buffer))
