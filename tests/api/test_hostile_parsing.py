"""Hostile request bodies, in process: each a client error, never a 500.

The live-server suite (tests/e2e/test_hostile.py) throws the same at a real
``deepaas-run`` byte for byte; these pin the behaviour of the parsing code itself.
"""

import asyncio
import json
import logging

import pytest
from aiohttp import web

from deepaas.api._json_body import MAX_DEPTH, load_arguments
from deepaas.exceptions import ArgumentError, MalformedRequest, UnsupportedMediaType

PREDICT = "/v2/models/legacy/predict/"
JSON = {"Content-Type": "application/json"}


def _nested(depth, inner=b"1"):
    return b"[" * depth + inner + b"]" * depth


# --- The JSON body reader -------------------------------------------------------------


def test_nesting_up_to_the_limit_is_read():
    body = b'{"a": ' + _nested(MAX_DEPTH - 1) + b"}"
    assert load_arguments(body, None)["a"] == json.loads(_nested(MAX_DEPTH - 1))


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": ' + _nested(MAX_DEPTH) + b"}",
        _nested(100_000),
        b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    ],
    ids=["one-past", "100k-lists", "100k-objects"],
)
def test_nesting_past_the_limit_is_malformed(body):
    with pytest.raises(MalformedRequest, match="nested deeper than"):
        load_arguments(body, None)


def test_brackets_inside_strings_are_not_nesting():
    body = json.dumps({"text": "[" * 1000, "list": [[1]]}).encode()
    assert load_arguments(body, None)["text"] == "[" * 1000


@pytest.mark.parametrize(
    ("body", "charset", "error", "text"),
    [
        (b'{"a": "\xff"}', None, MalformedRequest, "invalid start byte"),
        (b'{"a": "\xe9"}', "ascii", MalformedRequest, "in ascii"),
        (b"{}", "no-such-charset", UnsupportedMediaType, "Unknown charset"),
        (b'{"a": ' + b"9" * 5000 + b"}", None, MalformedRequest, "Invalid JSON"),
        (b'{"a": 1', None, MalformedRequest, "Invalid JSON"),
        (b"[1]", None, ArgumentError, "Invalid arguments: json"),
        (b"7", None, ArgumentError, "Invalid arguments: json"),
    ],
)
def test_bad_bodies_are_client_errors(body, charset, error, text):
    with pytest.raises(error, match=text) as caught:
        load_arguments(body, charset)
    assert type(caught.value) is error


def test_a_declared_charset_is_used():
    assert load_arguments('{"a": "é"}'.encode("latin-1"), "latin-1") == {"a": "é"}


# --- Through the application ----------------------------------------------------------


async def test_deep_json_is_400_naming_json(client):
    resp = await client.post(PREDICT, data=_nested(50_000), headers=JSON)
    assert resp.status == 400
    assert "nested deeper than" in (await resp.json())["json"][0]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/x-www-form-urlencoded"],
)
async def test_unknown_charset_is_415(client, content_type):
    headers = {"Content-Type": f"{content_type}; charset=no-such-charset"}
    resp = await client.post(PREDICT, data=b"{}", headers=headers)
    assert resp.status == 415
    assert "no-such-charset" in (await resp.json())["message"]


async def test_urlencoded_body_that_is_not_text_is_400(client):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = await client.post(PREDICT, data=b"message=\xff\xfe", headers=headers)
    assert resp.status == 400
    assert "form" in (await resp.json())["errors"]


async def test_upload_name_that_is_not_utf8_is_made_text(client):
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="image"; filename="\xff.png"'
        b"\r\nContent-Type: image/\xfe\r\n\r\ndata\r\n--XX--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=XX"}
    resp = await client.post(PREDICT, data=body, headers=headers)
    assert resp.status == 200
    image = (await resp.json())["predictions"]["image"]
    assert image["original_filename"] == "\ufffd.png"
    assert image["content_type"] == "image/\ufffd"


async def test_upload_name_decoded_to_a_lone_surrogate_is_made_text(client):
    # RFC 5987 lets the client name any codec; this one yields a lone surrogate.
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="image"; '
        b"filename*=raw_unicode_escape''%5Cud800.png\r\n\r\ndata\r\n--XX--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=XX"}
    resp = await client.post(PREDICT, data=body, headers=headers)
    assert resp.status == 200
    image = (await resp.json())["predictions"]["image"]
    assert image["original_filename"] == "?.png"


@pytest.fixture
async def served(app):
    """``app`` on a loopback port as ``deepaas-run`` serves it (handlers run on
    when a client disconnects; aiohttp's test server cancels them instead)."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0]
    await runner.cleanup()


async def test_client_hanging_up_mid_body_is_no_server_error(served, caplog):
    host, port = served
    body = b'--XX\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi'
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=XX\r\n"
        f"Content-Length: {len(body) + 100}\r\n\r\n"
    ).encode()
    with caplog.at_level(logging.INFO, logger="deepaas.api.errors"):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(head + body)
        await writer.drain()
        writer.write_eof()
        # Nothing to answer to a request that never ended: the server closes.
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not any("disconnected" in r.message for r in caplog.records):
            assert loop.time() < deadline, caplog.text
            await asyncio.sleep(0.05)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
