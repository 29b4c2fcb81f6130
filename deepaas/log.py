"""Logging set-up for the commands, and what every log line may say about its context.

Library code only calls ``logging.getLogger``. What a line is about is kept in two
context variables: :data:`REQUEST_ID` (set for each HTTP request, so that every
line logged while answering it carries the request's id) and :data:`JOB_ID` (set
while a training is started, followed or run). A record may also carry
``request_id`` or ``job_id`` itself, through ``extra``. The formatters installed
by :func:`setup_logging` add both to every line that has them.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import json
import logging
from typing import Any

__all__ = [
    "HTTP_FIELDS",
    "JOB_ID",
    "REQUEST_ID",
    "JsonFormatter",
    "PlainFormatter",
    "context_of",
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


def setup_logging(
    level: str = "INFO", log_file: str | None = None, fmt: str = "plain"
) -> None:
    """Configure the root logger once, for a command-line entry point.

    Args:
        level: A level name such as ``"DEBUG"`` or ``"INFO"``.
        log_file: Write to this file instead of standard error.
        fmt: ``"plain"`` (text lines) or ``"json"`` (one JSON object a line).
    """
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
