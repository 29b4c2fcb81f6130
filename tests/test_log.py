"""Log lines: plain or JSON, with the request and job they are about."""

import asyncio
import json
import logging
import sys

import pytest

from deepaas.log import (
    JOB_ID,
    REQUEST_ID,
    JsonFormatter,
    PlainFormatter,
    direct_writer,
    log_direct,
    setup_logging,
)


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


@pytest.fixture
def installed(tmp_path):
    """setup_logging's handler, writing to a file, for one test."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level

    def install(fmt="plain"):
        path = tmp_path / "log.txt"
        setup_logging("INFO", str(path), fmt)
        return path

    yield install
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


ACCESS = logging.getLogger("deepaas.access")


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_a_direct_line_is_the_line_a_record_gives(installed, context, fmt):
    path = installed(fmt)
    context(job_id="job-7")
    fields = {"status": 200, "path": "/x"}
    assert log_direct(ACCESS, "GET /x req-9", fields=fields, request_id="req-9")
    ACCESS.info("GET /x req-9", extra={"http": fields, "request_id": "req-9"})
    logging.getLogger().handlers[0].flush()
    direct, logged = path.read_text().splitlines()
    if fmt == "json":
        direct, logged = json.loads(direct), json.loads(logged)
        assert direct.pop("time")[:19] == logged.pop("time")[:19]
        assert direct == logged
    else:
        # The same line but for the milliseconds of the time stamp.
        assert direct[:19] == logged[:19]
        assert direct[23:] == logged[23:]
        assert direct.endswith(" INFO deepaas.access [job_id=job-7]: GET /x req-9")


def test_direct_lines_wait_for_the_loop_and_keep_their_order(installed):
    path = installed()

    async def log_some():
        writer = direct_writer(ACCESS)
        assert writer is not None
        writer.write_line("first")
        writer.write_line("second")
        # Nothing is written yet: one write later takes both.
        assert path.read_text() == ""
        # A record written meanwhile comes after the lines before it.
        ACCESS.warning("third")
        writer.write_line("fourth")
        await asyncio.sleep(0.2)
        return path.read_text().splitlines()

    lines = asyncio.run(log_some())
    assert lines[:2] == ["first", "second"]
    assert lines[2].endswith("WARNING deepaas.access: third")
    assert lines[3] == "fourth"


def test_direct_lines_are_written_at_close(installed):
    path = installed()

    async def log_one():
        direct_writer(ACCESS).write_line("last words")

    asyncio.run(log_one())
    # As logging.shutdown() does at exit.
    logging.getLogger().handlers[0].close()
    assert path.read_text() == "last words\n"


def test_no_direct_writing_past_another_handler(installed):
    installed()
    # Such as a test's capturing handler, which would miss a direct line.
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    try:
        assert direct_writer(ACCESS) is None
        assert not log_direct(ACCESS, "x", fields=None, request_id="r")
    finally:
        logging.getLogger().removeHandler(other)


def test_no_direct_writing_through_a_filter_or_a_custom_format(installed):
    installed()
    handler = logging.getLogger().handlers[0]
    assert direct_writer(ACCESS) is handler
    ACCESS.addFilter(lambda record: True)
    try:
        assert direct_writer(ACCESS) is None
    finally:
        ACCESS.filters.clear()
    handler.setFormatter(PlainFormatter("%(message)s"))
    assert handler.info_prefix("deepaas.access") is None
    assert not log_direct(ACCESS, "x", fields=None, request_id="r")


def test_lines_of_a_loop_closed_before_its_flush_are_not_held_back(installed):
    path = installed()

    async def write(line, wait):
        direct_writer(ACCESS).write_line(line)
        await asyncio.sleep(wait)

    # The first loop ends before its flush is due: that flush never comes.
    asyncio.run(write("one", 0))
    asyncio.run(write("two", 0.2))
    assert path.read_text().splitlines() == ["one", "two"]
