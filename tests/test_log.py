"""Log lines: plain or JSON, with the request and job they are about."""

import json
import logging
import sys

import pytest

from deepaas.log import JOB_ID, REQUEST_ID, JsonFormatter, PlainFormatter, setup_logging


def _record(msg="hello %s", args=("world",), **extra):
    record = logging.LogRecord(
        "deepaas.x", logging.WARNING, __file__, 1, msg, args, None
    )
    record.__dict__.update(extra)
    return record


@pytest.fixture
def context():
    """Set the context variables for one test (each test has a context of its own)."""

    def set_ids(request_id=None, job_id=None):
        REQUEST_ID.set(request_id)
        JOB_ID.set(job_id)

    yield set_ids
    set_ids()


def test_plain_line_without_context():
    line = PlainFormatter().format(_record())
    assert line.endswith(" WARNING deepaas.x: hello world")


def test_plain_line_with_the_context(context):
    context("req-1", "job-1")
    line = PlainFormatter().format(_record())
    assert line.endswith(" deepaas.x [request_id=req-1 job_id=job-1]: hello world")
    context(job_id="job-2")
    assert " deepaas.x [job_id=job-2]: " in PlainFormatter().format(_record())


def test_ids_of_the_record_win_over_the_context(context):
    context("req-1", "job-1")
    line = PlainFormatter().format(_record(job_id="mine"))
    assert "[request_id=req-1 job_id=mine]" in line


def test_access_lines_name_their_request_once(context):
    context("req-1", "job-1")
    line = PlainFormatter().format(_record(msg="GET / req-1", args=(), http={}))
    assert line.endswith(" deepaas.x [job_id=job-1]: GET / req-1")


def test_json_line(context):
    context("req-1")
    entry = json.loads(JsonFormatter().format(_record(http={"status": 200})))
    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "deepaas.x"
    assert entry["request_id"] == "req-1"
    assert "job_id" not in entry
    assert entry["status"] == 200
    assert entry["time"][10] == "T"


def test_json_line_with_a_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    text = JsonFormatter().format(record)
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exception"]


@pytest.mark.parametrize(
    ("fmt", "cls"), [("plain", PlainFormatter), ("json", JsonFormatter)]
)
def test_setup_logging_chooses_the_format(fmt, cls):
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        setup_logging("INFO", None, fmt)
        (handler,) = root.handlers
        assert isinstance(handler.formatter, cls)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)
