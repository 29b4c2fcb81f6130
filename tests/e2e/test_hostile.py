"""Hostile input thrown at a live ``deepaas-run``, byte for byte.

Every request is written on a raw socket (no client library to tidy it up) and
must be answered within a bound. Requests that reach the application answer a
JSON ``{"message": ...}`` with a 4xx status and no traceback or server path;
requests that are not valid HTTP never reach it and get aiohttp's short
``text/plain`` 400 (see docs/user/hostile-input.rst). After every test the server
still serves ordinary predictions, has logged no unexpected error, and has
written nothing outside its temporary and state directories.
"""

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

import deepaas
from deepaas.api.args import UPLOAD_PREFIX

# No answer may take longer than this (generous: CI machines are small).
BOUND_S = 20.0
DEEPAAS_DIR = str(Path(deepaas.__file__).parent)
LEGACY = "/v2/models/legacy/predict/"
MODERN = "/v2/models/modern/predict/"
BOUNDARY = "hostile-boundary"


# --- Talking to the server byte for byte ----------------------------------------------


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def _parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(status, headers, body)


async def exchange(server, raw, *, half_close=False):
    """Send ``raw`` and read until the server closes (``None``: closed silently)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(raw)
        await writer.drain()
        if half_close:
            writer.write_eof()
        # Every request here says "Connection: close" or is refused: the server
        # must close the connection, within the bound.
        received = await asyncio.wait_for(reader.read(), BOUND_S)
    finally:
        writer.close()
    return _parse(received) if received else None


def http(method, path, body=b"", *, content_type=None, headers=()):
    """A complete HTTP/1.1 request with an honest Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode() + b"".join(b"\r\n" + h for h in headers)
    return head + b"\r\n\r\n" + body


def multipart(*parts, boundary=BOUNDARY):
    """A multipart body of raw ``parts`` (each its header lines, then its data)."""
    body = b""
    for headers, data in parts:
        body += f"--{boundary}\r\n".encode() + headers + b"\r\n\r\n" + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def field(name, data, *, filename=None, extra=b""):
    """One part: ``name``/``filename`` given as bytes are sent as they are."""
    disposition = b'Content-Disposition: form-data; name="' + _bytes(name) + b'"'
    if filename is not None:
        disposition += b'; filename="' + _bytes(filename) + b'"'
    return disposition + extra, data


def _bytes(value):
    return value if isinstance(value, bytes) else value.encode()


def post_multipart(path, body, *, boundary=BOUNDARY):
    return http(
        "POST", path, body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def post_json_bytes(path, body, *, content_type="application/json"):
    return http("POST", path, body, content_type=content_type)


def assert_json_error(server, answer, status):
    """A deliberate JSON error: the status, a message, nothing given away."""
    assert answer is not None, "the server closed the connection without answering"
    text = answer.body.decode("utf-8")
    assert answer.status == status, text
    assert answer.headers["content-type"].startswith("application/json"), answer
    assert "message" in answer.json(), text
    assert "Traceback" not in text, text
    for secret in (str(server.root), DEEPAAS_DIR):
        assert secret not in text, text


def assert_refused(answer):
    """Not HTTP: aiohttp's parser answers a short 400 and closes the connection."""
    assert answer is not None
    assert answer.status == 400, answer
    assert "Traceback" not in answer.body.decode("utf-8", "replace"), answer
    assert len(answer.body) < 1024, answer


@pytest.fixture(autouse=True)
def _still_healthy(live_server):
    """After each test: predictions work, no unexpected error, nothing stray."""
    logged_before = live_server.log.stat().st_size
    yield
    live_server.assert_healthy()
    with open(live_server.log, "rb") as log:
        log.seek(logged_before)
        logged = log.read().decode(errors="replace")
    assert "Unexpected error" not in logged, logged
    assert live_server.stray_files() == []


# --- Malformed and truncated multipart ------------------------------------------------

GOOD_PART = field("message", b"hi")
TRUNCATED = multipart(GOOD_PART)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(TRUNCATED[:-12], 400, id="no-closing-boundary"),
        pytest.param(TRUNCATED[:30], 400, id="part-headers-cut"),
        pytest.param(b"no boundary anywhere", 400, id="boundary-never-sent"),
        pytest.param(
            multipart((b"this is no header line", b"x")), 400, id="bad-part-header"
        ),
        pytest.param(
            multipart(field("image", b"x", filename="a\0b.png")), 400, id="nul-filename"
        ),
        pytest.param(
            multipart(field("image", b"x", filename="n" * 100_000)),
            400,
            id="filename-past-header-limit",
        ),
        pytest.param(
            multipart(
                field("m", b"abcde", extra=b"\r\nContent-Transfer-Encoding: base64")
            ),
            400,
            id="bad-base64-part",
        ),
        pytest.param(
            multipart(
                (
                    b"Content-Disposition: form-data; name=x\r\n"
                    b"Content-Type: multipart/mixed; boundary=inner",
                    b"--inner\r\n\r\ny\r\n--inner--",
                )
            ),
            422,
            id="nested-multipart",
        ),
    ],
)
async def test_malformed_multipart_is_a_client_error(live_server, body, status):
    answer = await exchange(live_server, post_multipart(LEGACY, body))
    assert_json_error(live_server, answer, status)


async def test_body_cut_short_by_a_client_that_hangs_up(live_server):
    # Content-Length promises more than comes, then the client stops sending:
    # nothing can be answered, but the server must neither hang nor log an error.
    request = post_multipart(LEGACY, TRUNCATED)
    cut = request[: len(request) - 20]
    answer = await exchange(live_server, cut, half_close=True)
    assert answer is None or answer.status == 400


# --- Wrong content types --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("text/plain", b"count=2", 415),
        ("application/xml", b"<count>2</count>", 415),
        ("image/png", b"\x89PNG\r\n\x1a\n", 415),
        ("multipart/form-data", b"count=2", 400),
        ("multipart/form-data; boundary=", b"count=2", 400),
        ("application/json", b"count=2", 400),
        ("application/json", b'{"count": 2', 400),
        ("application/json", b"[1, 2]", 422),
        ("application/json", b"null", 422),
        ("application/json; charset=no-such-charset", b"{}", 415),
        ("application/x-www-form-urlencoded; charset=no-such-charset", b"a=1", 415),
    ],
)
async def test_wrong_content_type(live_server, content_type, body, status):
    request = post_json_bytes(LEGACY, body, content_type=content_type)
    assert_json_error(live_server, await exchange(live_server, request), status)


# --- Invalid UTF-8 --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "field_name"),
    [
        pytest.param(
            post_json_bytes(MODERN, b'{"text": "\xff\xfe"}'), 400, "json", id="json"
        ),
        pytest.param(
            http(
                "POST",
                MODERN,
                b"text=\xff\xfe",
                content_type="application/x-www-form-urlencoded",
            ),
            400,
            "form",
            id="urlencoded-form",
        ),
        pytest.param(
            post_multipart(MODERN, multipart(field("text", b"\xff\xfe"))),
            422,
            "text",
            id="multipart-field",
        ),
        pytest.param(
            http("POST", LEGACY, headers=[b"Accept: \xff\xfe"]),
            422,
            "accept",
            id="accept-header",
        ),
    ],
)
async def test_invalid_utf8_is_a_client_error(
    live_server, request_bytes, status, field_name
):
    answer = await exchange(live_server, request_bytes)
    assert_json_error(live_server, answer, status)
    assert field_name in answer.json()["errors"]


async def test_invalid_utf8_percent_escapes_in_a_query_become_replacement_characters(
    live_server,
):
    answer = await exchange(live_server, http("POST", f"{MODERN}?text=%FF%FEok"))
    assert answer.status == 200, answer
    assert answer.json()["label"] == "modern:\ufffd\ufffdok"


async def test_invalid_utf8_in_an_upload_file_name_becomes_replacement_characters(
    live_server,
):
    body = multipart(field("image", b"data", filename=b"\xff\xfe.png"))
    answer = await exchange(live_server, post_multipart(LEGACY, body))
    assert answer.status == 200, answer
    image = answer.json()["predictions"]["image"]
    assert image["original_filename"] == "\ufffd\ufffd.png"
    assert image["size"] == 4


# --- Huge numbers and deep nesting ----------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "field_name"),
    [
        pytest.param(
            post_json_bytes(LEGACY, b'{"ratio": 1e400}'), 422, "ratio", id="float-inf"
        ),
        pytest.param(
            post_json_bytes(LEGACY, b'{"count": 1e308}'), 422, "count", id="int-1e308"
        ),
        pytest.param(
            post_json_bytes(LEGACY, b'{"count": ' + b"9" * 5000 + b"}"),
            400,
            "json",
            id="int-5000-digits-json",
        ),
        pytest.param(
            http("POST", f"{LEGACY}?count={'9' * 5000}"),
            422,
            "count",
            id="int-5000-digits-query",
        ),
        pytest.param(
            http("POST", f"{LEGACY}?ratio=1e400"), 422, "ratio", id="float-inf-query"
        ),
        pytest.param(
            http("POST", f"{MODERN}?text=a&threshold=NaN"),
            422,
            "threshold",
            id="nan-query",
        ),
        pytest.param(
            post_json_bytes("/v2/models/modern/train/", b'{"epochs": 1e400}'),
            422,
            "epochs",
            id="train-int-from-inf",
        ),
    ],
)
async def test_huge_numbers_are_rejected_naming_the_field(
    live_server, request_bytes, status, field_name
):
    answer = await exchange(live_server, request_bytes)
    assert_json_error(live_server, answer, status)
    assert field_name in answer.json()["errors"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100k-lists"),
        pytest.param(b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, id="100k-objects"),
        pytest.param(
            b'{"numbers": ' + b"[" * 100 + b"]" * 100 + b"}", id="just-past-the-limit"
        ),
        pytest.param(b"[" * 100_000, id="100k-unclosed"),
    ],
)
@pytest.mark.parametrize("path", [LEGACY, "/v2/models/modern/train/"])
async def test_deeply_nested_json_is_a_client_error(live_server, body, path):
    answer = await exchange(live_server, post_json_bytes(path, body))
    assert_json_error(live_server, answer, 400)
    assert "json" in answer.json()["errors"]


async def test_nesting_within_the_limit_is_validated_as_usual(live_server):
    body = b'{"numbers": ' + b"[" * 99 + b"]" * 99 + b"}"
    answer = await exchange(live_server, post_json_bytes(LEGACY, body))
    assert_json_error(live_server, answer, 422)
    assert "numbers" in answer.json()["errors"]


# --- Upload file names ----------------------------------------------------------------


async def _uploads_removed(server, timeout=BOUND_S):
    """Wait until every upload directory is gone (once its call has ended)."""
    deadline = time.monotonic() + timeout
    while server.leftover_uploads():
        assert time.monotonic() < deadline, server.leftover_uploads()
        await asyncio.sleep(0.05)


HOSTILE_NAMES = [
    "../../etc/hostile",
    "../../../../../../../../tmp/hostile",
    "/etc/hostile",
    "..\\..\\hostile.exe",
    "..",
    ".",
    "",
    "~/.bashrc",
    "ünïcødé-😀-名前.png",
    "x" * 4000,
    "con",
    "a/b/../../../hostile",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
async def test_hostile_upload_names_stay_in_the_temporary_directory(live_server, name):
    body = multipart(field("image", b"payload", filename=name))
    answer = await exchange(live_server, post_multipart(LEGACY, body))
    assert answer.status == 200, answer
    image = answer.json()["predictions"]["image"]
    # Kept as the client's name, for the model; the file itself is ours.
    assert image["original_filename"] is not None
    stored = Path(image["filename"])
    assert stored.name.startswith(UPLOAD_PREFIX)
    assert stored.is_relative_to(live_server.tmp_dir)
    await _uploads_removed(live_server)


async def test_rfc5987_names_and_nul_stay_in_the_temporary_directory(live_server):
    headers = (
        b'Content-Disposition: form-data; name="image"; '
        b"filename*=UTF-8''..%2F..%2Fhostile%00.png"
    )
    answer = await exchange(
        live_server, post_multipart(LEGACY, multipart((headers, b"x")))
    )
    assert answer.status == 200, answer
    image = answer.json()["predictions"]["image"]
    assert image["original_filename"] == "../../hostile\0.png"
    assert Path(image["filename"]).is_relative_to(live_server.tmp_dir)
    await _uploads_removed(live_server)


async def test_hostile_upload_names_in_a_training_stay_in_the_temporary_directory(
    live_server,
):
    # Training keeps its uploads until the job ends: wait for that.
    body = multipart(
        field("epochs", b"1"), field("data", b"payload", filename="../../hostile")
    )
    answer = await exchange(
        live_server, post_multipart("/v2/models/modern/train/", body)
    )
    assert answer.status == 200, answer
    uuid = answer.json()["uuid"]
    await _uploads_removed(live_server, timeout=60)
    status, _, record = live_server.request("GET", f"/v2/models/modern/train/{uuid}")
    assert status == 200
    assert json.loads(record)["status"] == "done"


# --- Enormous headers and what is not HTTP at all -------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            b"GET /v2/models/ HTTP/1.1\r\nHost: x\r\nX-Big: "
            + b"a" * 100_000
            + b"\r\n\r\n",
            id="100k-header",
        ),
        pytest.param(
            b"GET /v2/models/ HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
            + b"\r\n",
            id="5000-headers",
        ),
        pytest.param(
            b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="100k-url"
        ),
        pytest.param(b"GARBAGE\r\n\r\n", id="garbage"),
        pytest.param(b"FOOBAR /v2/models/ HTTP/1.1\r\nHost: x\r\n\r\n", id="method"),
        pytest.param(b"GET /v2/models/\xff HTTP/1.1\r\nHost: x\r\n\r\n", id="raw-ff"),
        pytest.param(
            b"GET /v2/models/ HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n", id="nul"
        ),
        pytest.param(
            b"POST /v2/models/legacy/predict/ HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: abc\r\n\r\n",
            id="content-length",
        ),
        pytest.param(
            b"POST /v2/models/legacy/predict/ HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="length-and-chunked",
        ),
        pytest.param(
            b"POST /v2/models/legacy/predict/ HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
            b"zz\r\n",
            id="chunk-size",
        ),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="http2-preface"),
        pytest.param(bytes.fromhex("16030100a5010000a10303") + bytes(64), id="tls"),
    ],
)
async def test_what_is_not_http_is_refused(live_server, raw):
    assert_refused(await exchange(live_server, raw))


# --- Unknown models and job ids -------------------------------------------------------

# (A bare ".." is no odd name: URL resolution removes it before any routing.)
ODD_NAMES = ["nope", "%2e%2e", "a%00b", "a%2Fb", "%FF%FE", "ü😀", "n" * 2000]


@pytest.mark.parametrize("name", ODD_NAMES, ids=range(len(ODD_NAMES)))
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/v2/models/{}/"),
        ("POST", "/v2/models/{}/predict/"),
        ("POST", "/v2/models/{}/train/"),
        ("GET", "/v2/models/{}/train/"),
        ("GET", "/v2/models/{}/train/0123"),
        ("GET", "/v2/models/legacy/train/{}"),
        ("DELETE", "/v2/models/legacy/train/{}"),
        ("GET", "/v2/models/legacy/train/{}/logs"),
        ("GET", "/v2/models/modern/train/{}/logs?follow=true"),
    ],
)
async def test_unknown_models_and_jobs_are_404(live_server, name, method, template):
    request = http(method, template.format(urllib.parse.quote(name, safe="%")))
    assert_json_error(live_server, await exchange(live_server, request), 404)


# --- Concurrent cancels ---------------------------------------------------------------


def _trainings(pid):
    """Training processes of the server (spawned children)."""
    out = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "spawn_main"], capture_output=True, text=True
    )
    return out.stdout.split()


async def _simultaneous(server, requests):
    """Answers to ``requests``, all read by the server in the same instant.

    The server is stopped (SIGSTOP) while the connections are made (the kernel
    completes them) and the requests written, then resumed: it finds every
    request waiting at once, as it would under a burst.
    """
    connections = []
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        for raw in requests:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            connections.append((reader, writer))
            writer.write(raw)
            await writer.drain()
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    try:
        received = await asyncio.wait_for(
            asyncio.gather(*(reader.read() for reader, _ in connections)), BOUND_S
        )
    finally:
        for _, writer in connections:
            writer.close()
    return [_parse(raw) for raw in received]


@pytest.mark.parametrize("state", ["starting", "running", "queued"])
async def test_concurrent_cancels_of_one_training_agree(live_server, state):
    train = "/v2/models/legacy/train/"
    pid = live_server.proc.pid
    status, first = live_server.post_json(train, {"sleep": 120})
    assert status == 200
    assert first["status"] == "running"
    job = first
    if state == "running":
        deadline = time.monotonic() + BOUND_S
        while not _trainings(pid):
            assert time.monotonic() < deadline, "the training never started"
            await asyncio.sleep(0.05)
    elif state == "queued":
        status, job = live_server.post_json(train, {"sleep": 120})
        assert job["status"] == "queued"

    answers = await _simultaneous(
        live_server, [http("DELETE", f"{train}{job['uuid']}")] * 12
    )

    assert {a.status for a in answers} <= {200, 404}, answers
    cancelled = [a.json() for a in answers if a.status == 200]
    assert cancelled, answers
    assert {record["status"] for record in cancelled} == {"cancelled"}
    for answer in answers:
        if answer.status == 404:
            assert_json_error(live_server, answer, 404)
    status, _, body = live_server.request("GET", f"{train}{job['uuid']}")
    # A DELETE handled once the cancellation is over removes the record, as
    # for any finished training: whether one came that late depends on how the
    # event loop spreads the requests over its turns.
    assert status in (200, 404)
    if status == 200:
        assert json.loads(body)["status"] == "cancelled"

    if job is not first:
        live_server.request("DELETE", f"{train}{first['uuid']}")
    # Training workers are reused, and a killed one is replaced, so processes
    # may remain; but the only training slot must be free again at once: a
    # cancelled training that still ran would hold it for two minutes.
    status, probe = live_server.post_json(train, {"sleep": 0})
    assert status == 200
    deadline = time.monotonic() + BOUND_S
    while True:
        status, _, body = live_server.request("GET", f"{train}{probe['uuid']}")
        if json.loads(body)["status"] == "done":
            break
        assert time.monotonic() < deadline, "a cancelled training still runs"
        await asyncio.sleep(0.1)
