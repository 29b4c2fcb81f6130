"""Logging set-up for the commands, and what every log line may say about its context.

Library code only calls ``logging.getLogger``. What a line is about is kept in two
context variables: :data:`REQUEST_ID` (set for each HTTP request, so that every
line logged while answering it carries the request's id) and :data:`JOB_ID` (set
while a training is started, followed or run). A record may also carry
``request_id`` or ``job_id`` itself, through ``extra``. The formatters installed
by :func:`setup_logging` add both to every line that has them.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as _dt
import json
import logging
import os
import time
from typing import Any

__all__ = [
    "HTTP_FIELDS",
    "JOB_ID",
    "REQUEST_ID",
    "DirectWriter",
    "JsonFormatter",
    "PlainFormatter",
    "context_of",
    "direct_writer",
    "log_direct",
    "setup_logging",
]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "deepaas_request_id", default=None
)
"""The id of the HTTP request being answered, if any."""

JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "deepaas_job_id", default=None
)
"""The id of the training being started, followed or run, if any."""

HTTP_FIELDS = "http"
"""Name of the record attribute with an access line's fields, as a dict."""

_FORMAT = (
    "%(asctime)s %(process)d %(levelname)s %(name)s%(deepaas_context)s: %(message)s"
)


def context_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """The request id and job id of ``record``: its own, else the context's."""
    request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
    job_id = getattr(record, "job_id", None) or JOB_ID.get()
    return request_id, job_id


class PlainFormatter(logging.Formatter):
    """One text line per record, with ``[request_id=... job_id=...]`` when known.

    The context comes right after the logger name, so that it is on the first
    line of a message that has several. Access lines carry their request id in
    the message already, so only their job id is added.

    Args:
        fmt: A ``%``-style format; ``%(deepaas_context)s`` is the context, empty
            or with a leading space.
    """

    def __init__(self, fmt: str = _FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line without its traceback, the record's context included."""
        request_id, job_id = context_of(record)
        if getattr(record, HTTP_FIELDS, None) is not None:
            request_id = None
        if request_id and job_id:
            context = f" [request_id={request_id} job_id={job_id}]"
        elif request_id:
            context = f" [request_id={request_id}]"
        elif job_id:
            context = f" [job_id={job_id}]"
        else:
            context = ""
        record.deepaas_context = context
        return super().formatMessage(record)

    def _info_prefix(self, name: str) -> str | None:
        # What format() would put before the message of an INFO access record
        # of logger ``name`` made now, when the format is the default one (the
        # only one this can reproduce). All but the milliseconds is worked out
        # once a second (the process id too: a process forked meanwhile gets
        # its own within the second).
        if self._fmt != _FORMAT or self.converter is not time.localtime:
            return None
        now = time.time()
        second = int(now)
        job_id = JOB_ID.get()
        cached = self._cached
        if cached[0] != second or cached[1] != name or cached[2] != job_id:
            stamp = time.strftime(self.default_time_format, time.localtime(now))
            context = f" [job_id={job_id}]" if job_id else ""
            tail = f" {os.getpid()} INFO {name}{context}: "
            cached = self._cached = (second, name, job_id, f"{stamp},", tail)
        return f"{cached[3]}{int((now - second) * 1000):03d}{cached[4]}"

    _cached: tuple[int, str, str | None, str, str] = (-1, "", None, "", "")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors.

    Keys: ``time`` (ISO 8601 with the UTC offset), ``level``, ``logger``,
    ``process``, ``message``, then ``request_id`` and ``job_id`` when known, an
    access line's fields (``method``, ``path``, ``status``...) and ``exception``
    with the traceback of a record logged with one.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        created = _dt.datetime.fromtimestamp(record.created).astimezone()
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        request_id, job_id = context_of(record)
        if request_id:
            entry["request_id"] = request_id
        if job_id:
            entry["job_id"] = job_id
        fields = getattr(record, HTTP_FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)

    def _info_line(
        self, name: str, message: str, fields: dict[str, Any] | None, request_id: str
    ) -> str:
        # What format() would give an INFO access record of logger ``name``.
        created = _dt.datetime.fromtimestamp(time.time()).astimezone()
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": name,
            "process": os.getpid(),
            "message": message,
            "request_id": request_id,
        }
        job_id = JOB_ID.get()
        if job_id:
            entry["job_id"] = job_id
        if fields:
            entry.update(fields)
        return json.dumps(entry, default=str)


class DirectWriter(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler of :func:`setup_logging`: records, and lines written directly.

    Lines given to :meth:`write_line` are written together, at most
    :data:`_LINE_DELAY_S` later: one write for many access lines, where a
    record costs a write each. A record emitted meanwhile writes them first, so
    the order of lines is kept, and so do :meth:`flush` and :meth:`close` (and
    ``logging.shutdown`` at exit).
    """

    def __init__(self, log_file: str | None) -> None:
        # Opened here, as logging.FileHandler would, and closed by close().
        stream = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115
        super().__init__(stream)
        self._own_stream = stream is not None
        self._pending: list[str] = []
        # The loop a flush is due on, if any; only its thread touches this. A
        # loop closed before its flush came leaves a stale value, never reused.
        self._due_on: asyncio.AbstractEventLoop | None = None

    def info_prefix(self, name: str) -> str | None:
        """What goes before the message of an INFO access line of logger ``name``.

        ``None`` when lines are not plain text in the default format.
        """
        formatter = self.formatter
        if type(formatter) is PlainFormatter:
            return formatter._info_prefix(name)
        return None

    def info_line(
        self, name: str, message: str, fields: dict[str, Any] | None, request_id: str
    ) -> str | None:
        """The INFO access line of logger ``name``, as the formatter would write it.

        ``None`` when the formatter is not one of :func:`setup_logging`.
        """
        formatter = self.formatter
        if type(formatter) is JsonFormatter:
            return formatter._info_line(name, message, fields, request_id)
        prefix = self.info_prefix(name)
        return None if prefix is None else prefix + message

    def write_line(self, line: str) -> None:
        """Write ``line`` (without its newline) soon, with others.

        Call it from an event loop's thread; without a running loop the line
        is written at once.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            if loop is not None and loop is self._due_on:
                if len(self._pending) < _MAX_PENDING:
                    return
            elif loop is not None:
                self._due_on = loop
                loop.call_later(_LINE_DELAY_S, self._due, loop)
                return
        self.flush()

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._due_on is loop:
            self._due_on = None
        self.flush()

    def flush(self) -> None:
        """Write the lines waiting, then flush the stream."""
        with self.lock:  # type: ignore[union-attr]
            if self._pending:
                text = self.terminator.join(self._pending) + self.terminator
                self._pending.clear()
                try:
                    self.stream.write(text)
                except Exception:
                    self.handleError(logging.makeLogRecord({"msg": text}))
        super().flush()

    def emit(self, record: logging.LogRecord) -> None:
        """Write the lines waiting, then the record."""
        if self._pending:
            self.flush()
        super().emit(record)

    def close(self) -> None:
        """Write the lines waiting, then close a file of our own."""
        self.flush()
        if self._own_stream and self.stream is not None:
            self.stream.close()
            # As logging.FileHandler: a second close is harmless.
            self.stream = None
        super().close()


# How long a line may wait for others, and how many may wait.
_LINE_DELAY_S = 0.05
_MAX_PENDING = 512


def direct_writer(logger: logging.Logger) -> DirectWriter | None:
    """The handler that INFO lines of ``logger`` may be written to directly, if any.

    For lines logged for every request, where a ``LogRecord``, a handler call
    and a write each cost more than the line itself. Writing directly is safe
    when the line can only reach the handler that :func:`setup_logging`
    installed, through no filter and no other handler, so that it comes out
    exactly as the record would have. Otherwise ``None`` is returned, and the
    caller logs a record as usual (a test's capturing handler gets it so).
    Ask again for every line: the configuration may have changed.

    Args:
        logger: The logger the lines belong to; the caller has checked that it
            is enabled for INFO.
    """
    current: logging.Logger | None = logger
    while current is not None and current.parent is not None:
        if current.handlers or current.filters or not current.propagate:
            return None
        current = current.parent
    handlers = logging.root.handlers
    if current is None or len(handlers) != 1 or logging.root.filters:
        return None
    handler = handlers[0]
    if type(handler) is not DirectWriter or handler.filters:
        return None
    if handler.level > logging.INFO:
        return None
    return handler


def log_direct(
    logger: logging.Logger,
    message: str,
    *,
    fields: dict[str, Any] | None,
    request_id: str,
) -> bool:
    """Write an INFO access line of ``logger`` without a record, when that is safe.

    See :func:`direct_writer`. Returns ``False`` when nothing was written, and
    the caller must log a record.

    Args:
        logger: The logger the line belongs to.
        message: The line's message, already formatted.
        fields: What a JSON line adds (as ``extra={HTTP_FIELDS: ...}`` would).
        request_id: The request the line is about.
    """
    writer = direct_writer(logger)
    if writer is None:
        return False
    line = writer.info_line(logger.name, message, fields, request_id)
    if line is None:
        return False
    writer.write_line(line)
    return True


def setup_logging(
    level: str = "INFO", log_file: str | None = None, fmt: str = "plain"
) -> None:
    """Configure the root logger once, for a command-line entry point.

    Args:
        level: A level name such as ``"DEBUG"`` or ``"INFO"``.
        log_file: Write to this file instead of standard error.
        fmt: ``"plain"`` (text lines) or ``"json"`` (one JSON object a line).
    """
    handler = DirectWriter(log_file)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
