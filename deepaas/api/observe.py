"""What every request goes through first: its id, its metrics and its access line.

One middleware does the three, as cheaply as it can, since it runs for every
request: labels and the log decision are worked out once per (route, method,
model, status) and kept, the request id is a per-process random prefix and a
counter, and nothing is formatted unless a line is written. It also turns
failures into answers and hands unmatched requests to path normalization, which
would otherwise take a middleware each.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Collection
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import SystemRoute
from multidict import istr
from prometheus_client import Counter

from deepaas.api.metrics import Metrics, RequestSeries
from deepaas.config import Config
from deepaas.log import HTTP_FIELDS, REQUEST_ID, log_direct

__all__ = [
    "ACCESS_LOGGER",
    "CLIENT_CLOSED",
    "REQUEST_ID_HEADER",
    "UNMATCHED_ROUTE",
    "Observer",
]

REQUEST_ID_HEADER = istr("X-Request-ID")
"""Header a request's id is read from, and echoed in."""

ACCESS_LOGGER = "deepaas.access"
"""Name of the logger of the access lines."""

UNMATCHED_ROUTE = "unmatched"
"""Route label of requests that match no route (404, 405, redirects)."""

CLIENT_CLOSED = 499
"""Status recorded for a request whose client went away before its answer."""

ErrorAnswer = Callable[[web.Request, Exception], web.StreamResponse]

# Longest client-supplied request id kept; longer ones are replaced.
_MAX_ID_LENGTH = 128
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_ACCESS_FORMAT = '%s "%s %s HTTP/%d.%d" %d %s %.3fms %s'
# Marks plain access records as such (their message has the request id already).
_PLAIN_EXTRA: dict[str, Any] = {HTTP_FIELDS: {}}


def acceptable_id(value: str) -> bool:
    """Whether a client's request id is safe to log and echo as it is."""
    return (
        0 < len(value) <= _MAX_ID_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


class _Entry:
    """What is recorded for one (route, method, model, status), worked out once."""

    __slots__ = ("body", "log", "model", "route", "series")

    def __init__(self, route: str, model: str, *, log: bool) -> None:
        self.route = route
        self.model = model
        self.log = log
        self.series: RequestSeries | None = None
        # Created on first use: most routes never read a body.
        self.body: Counter | None = None


class Observer:
    """Gives requests their id, records their metrics and logs their access line.

    Args:
        config: ``base_path``, ``access_log``, ``access_log_probes`` and
            ``log_format`` are read.
        models: Names of the served models: other names in a path are never a
            label value.
        metrics: Where requests are counted; ``None`` records nothing.
        answer_error: Turns a handler's exception into the answer to send
            (or raises a redirect); ``None`` lets exceptions through.
        unmatched: A middleware for requests that match no route only (such
            as aiohttp's path normalization, which redirects ``/x`` to ``/x/``).

    Both are done here rather than in middlewares of their own: every request
    goes through each middleware, and one costs less than three.

    Attributes:
        in_flight: Requests being answered now.
        quiet: Resources whose requests are logged only with
            ``access_log_probes`` (the probe and metrics endpoints).
        middleware: The aiohttp middleware; put it first, so that it sees the
            final answer of every request.
    """

    def __init__(
        self,
        config: Config,
        models: Collection[str],
        metrics: Metrics | None,
        *,
        answer_error: ErrorAnswer | None = None,
        unmatched: Middleware | None = None,
    ) -> None:
        self.in_flight = 0
        self.quiet: set[web.AbstractResource] = set()
        self._base = config.base_path
        self._models = frozenset(models)
        self._metrics = metrics
        self._access_log = config.access_log
        self._log_probes = config.access_log_probes
        self._json = config.log_format == "json"
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        self._answer_error = answer_error
        self._unmatched = unmatched
        self.middleware: Middleware = self._build()

    def _entry(
        self,
        resource: web.AbstractResource | None,
        method: str,
        model: str,
        status: int,
    ) -> _Entry:
        if resource is None:
            route = UNMATCHED_ROUTE
        else:
            route = resource.canonical
            if self._base and route.startswith(self._base):
                route = route[len(self._base) :] or "/"
        log = self._access_log and (self._log_probes or resource not in self.quiet)
        entry = _Entry(route, model, log=log)
        metrics = self._metrics
        if metrics is not None:
            entry.series = metrics.request_series(route, method, model, status)
        self._entries[resource, method, model, status] = entry
        return entry

    def _build(self) -> Middleware:
        entries = self._entries
        make_entry = self._entry
        models = self._models
        perf_counter = time.perf_counter
        set_request_id = REQUEST_ID.set
        prefix = f"{secrets.token_hex(6)}-"
        ids = itertools.count(1)
        log_access = self._log_access
        observer = self
        body_bytes = self._metrics.body_bytes if self._metrics is not None else None
        answer_error = self._answer_error
        unmatched = self._unmatched

        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            request_id = request.headers.get(REQUEST_ID_HEADER)
            if request_id is None or not acceptable_id(request_id):
                request_id = f"{prefix}{next(ids):x}"
            set_request_id(request_id)
            observer.in_flight += 1
            start = perf_counter()
            status = 500
            answer: web.StreamResponse | None = None
            try:
                try:
                    # type(), not isinstance(): routes are ABCs, slower to test.
                    if (
                        unmatched is not None
                        and type(request.match_info.route) is SystemRoute
                    ):
                        answer = await unmatched(request, handler)
                    else:
                        answer = await handler(request)
                except Exception as error:
                    if answer_error is None:
                        raise
                    answer = answer_error(request, error)
                status = answer.status
                if not answer.prepared:
                    answer.headers[REQUEST_ID_HEADER] = request_id
                return answer
            except web.HTTPException as exc:
                # Redirects (and anything not turned into an answer) are raised.
                answer = exc
                status = exc.status
                exc.headers[REQUEST_ID_HEADER] = request_id
                raise
            except asyncio.CancelledError:
                status = CLIENT_CLOSED
                raise
            finally:
                elapsed = perf_counter() - start
                observer.in_flight -= 1
                match_info = request.match_info
                resource = match_info.route.resource
                method = request.method
                if method not in _METHODS:
                    # Any token is a method; a route may accept every one.
                    method = "other"
                model = match_info.get("model_name")
                if model is None or model not in models:
                    model = ""
                entry = entries.get((resource, method, model, status))
                if entry is None:
                    entry = make_entry(resource, method, model, status)
                series = entry.series
                if series is not None:
                    series.record(elapsed)
                    received = request.content.total_bytes
                    if received and body_bytes is not None:
                        body = entry.body
                        if body is None:
                            body = entry.body = body_bytes.labels(
                                entry.route, entry.model
                            )
                        body.inc(received)
                if entry.log:
                    log_access(request, answer, status, elapsed, request_id, entry)

        return observe

    def _log_access(
        self,
        request: web.Request,
        answer: web.StreamResponse | None,
        status: int,
        elapsed: float,
        request_id: str,
        entry: _Entry,
    ) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        size: int | None = None
        if answer is not None:
            size = answer.body_length if answer.prepared else answer.content_length
        remote = request.remote or "-"
        version = request.version
        millis = elapsed * 1000
        extra = _PLAIN_EXTRA
        fields: dict[str, Any] | None = None
        if self._json:
            fields = {
                "remote": remote,
                "method": request.method,
                "path": request.raw_path,
                "status": status,
                "bytes": size,
                "duration_ms": round(millis, 3),
                "route": entry.route,
                "model": entry.model or None,
                "user_agent": request.headers.get("User-Agent"),
            }
            extra = {HTTP_FIELDS: fields, "request_id": request_id}
        args = (
            remote,
            request.method,
            request.raw_path,
            version.major,
            version.minor,
            status,
            "-" if size is None else size,
            millis,
            request_id,
        )
        # Straight to the handler when nothing else could see the record.
        if log_direct(
            logger, _ACCESS_FORMAT % args, fields=fields, request_id=request_id
        ):
            return
        # Logger.info would also look up the caller's frame, for nothing here.
        record = logger.makeRecord(
            ACCESS_LOGGER,
            logging.INFO,
            __file__,
            0,
            _ACCESS_FORMAT,
            args,
            None,
            extra=extra,
        )
        logger.handle(record)
