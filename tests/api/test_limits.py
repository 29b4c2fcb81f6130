"""Limits on what one client may send, and how slowly."""

import asyncio
import io
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from deepaas.api import create_app
from deepaas.cmd.serving import handler_options
from deepaas.config import Config

PREDICT = "/v2/models/legacy/predict/"


@pytest.fixture
def upload_dir(tmp_path):
    path = tmp_path / "uploads"
    path.mkdir()
    return path


@pytest.fixture
def limited(aiohttp_client, models, state_dir, upload_dir):
    """``limited(**settings)``: a client of an app with those settings."""

    async def make(**settings):
        config = Config(state_dir=str(state_dir), **settings)
        app = create_app(config, models, upload_dir=str(upload_dir))
        # Started here: the test server passes only these arguments to its runner.
        server = TestServer(app)
        await server.start_server(**handler_options(config))
        return await aiohttp_client(server)

    return make


def _form(*fields):
    form = aiohttp.FormData()
    for name, value in fields:
        if isinstance(value, bytes):
            form.add_field(name, io.BytesIO(value), filename=f"{name}.bin")
        else:
            form.add_field(name, value)
    return form


# --- Sizes and counts ---------------------------------------------------------------


async def test_file_over_its_limit_is_413_naming_the_field(limited, upload_dir):
    client = await limited(max_file_size=1000)
    resp = await client.post(PREDICT, data=_form(("image", b"x" * 1001)))
    assert resp.status == 413
    body = await resp.json()
    assert "'image'" in body["message"]
    assert "1000" in body["message"]
    assert list(body["errors"]) == ["image"]
    assert list(upload_dir.iterdir()) == []

    resp = await client.post(PREDICT, data=_form(("image", b"x" * 1000)))
    assert resp.status == 200
    assert (await resp.json())["predictions"]["image"]["size"] == 1000


async def test_second_file_over_its_limit_removes_the_first(limited, upload_dir):
    client = await limited(max_file_size=1000)
    resp = await client.post(
        PREDICT, data=_form(("other", b"x" * 900), ("image", b"y" * 5000))
    )
    assert resp.status == 413
    assert list((await resp.json())["errors"]) == ["image"]
    assert list(upload_dir.iterdir()) == []


async def test_body_over_client_max_size_while_streaming_is_413(limited, upload_dir):
    client = await limited(client_max_size=10_000)

    async def chunks():  # no Content-Length: only counting finds out
        for _ in range(10):
            yield b"x" * 2000

    form = aiohttp.FormData()
    form.add_field("image", chunks(), filename="big.bin")
    resp = await client.post(PREDICT, data=form)
    assert resp.status == 413
    assert "10000" in (await resp.json())["message"]
    assert list(upload_dir.iterdir()) == []


async def test_zero_client_max_size_means_no_limit(limited):
    client = await limited(client_max_size=0)
    resp = await client.post(PREDICT, data=_form(("image", b"x" * 3_000_000)))
    assert resp.status == 200
    assert (await resp.json())["predictions"]["image"]["size"] == 3_000_000


@pytest.mark.parametrize(
    "send",
    [
        lambda c, n: c.post(PREDICT, params=[("message", "a")] * n),
        lambda c, n: c.post(PREDICT, data=[("message", "a")] * n),
        lambda c, n: c.post(PREDICT, data=_form(*[("message", "a")] * n)),
        lambda c, n: c.post(
            PREDICT, params=[("message", "a")] * 2, data=[("count", "1")] * (n - 2)
        ),
    ],
    ids=["query", "urlencoded", "multipart", "query-and-form"],
)
async def test_too_many_fields_is_413(limited, upload_dir, send):
    client = await limited(max_form_fields=5)
    resp = await send(client, 5)
    assert resp.status == 200, await resp.text()
    resp = await send(client, 6)
    assert resp.status == 413
    assert (
        "more than 5 query parameters and form fields" in (await resp.json())["message"]
    )
    assert list(upload_dir.iterdir()) == []


async def test_zero_max_form_fields_means_no_limit(limited):
    client = await limited(max_form_fields=0)
    resp = await client.post(PREDICT, data=[("message", "a")] * 5000)
    assert resp.status == 200


async def test_urlencoded_form_in_an_unknown_charset_is_415(limited):
    client = await limited()
    resp = await client.post(
        PREDICT,
        data=b"message=a",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=nope"},
    )
    assert resp.status == 415
    assert "nope" in (await resp.json())["message"]


async def test_urlencoded_form_that_is_not_its_charset_is_400(limited):
    client = await limited()
    resp = await client.post(
        PREDICT,
        data=b"message=\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert resp.status == 400
    assert "form" in (await resp.json())["errors"]


# --- Slow bodies ----------------------------------------------------------------------


async def _stalling(first):
    yield first
    await asyncio.sleep(30)
    yield b"never sent"


def _stalled_form():
    form = aiohttp.FormData()
    form.add_field("count", "1")
    form.add_field("image", _stalling(b"x" * 70_000), filename="stalled.bin")
    return form


@pytest.mark.parametrize(
    "send",
    [
        lambda c: c.post(
            PREDICT,
            data=_stalling(b'{"message": "a'),
            headers={"Content-Type": "application/json"},
        ),
        lambda c: c.post(PREDICT, data=_stalled_form()),
    ],
    ids=["json", "multipart"],
)
async def test_stalled_body_is_408_and_its_uploads_removed(limited, upload_dir, send):
    client = await limited(body_timeout=0.5)
    started = time.monotonic()
    resp = await asyncio.wait_for(send(client), 10)
    assert resp.status == 408
    assert "stalled" in (await resp.json())["message"]
    assert time.monotonic() - started < 5
    assert resp.headers.get("Connection", "").lower() == "close"
    assert list(upload_dir.iterdir()) == []


async def test_slow_but_steady_body_is_read(limited):
    client = await limited(body_timeout=0.5)

    async def steady():
        for _ in range(4):
            yield b"x" * 1000
            await asyncio.sleep(0.3)

    form = aiohttp.FormData()
    form.add_field("image", steady(), filename="slow.bin")
    resp = await client.post(PREDICT, data=form)
    assert resp.status == 200
    assert (await resp.json())["predictions"]["image"]["size"] == 4000


# --- Headers and slow clients -------------------------------------------------------


async def test_header_line_over_its_limit_is_400(limited):
    client = await limited(max_header_size=1000)
    resp = await client.get("/v2/models/", headers={"X-Big": "a" * 900})
    assert resp.status == 200
    resp = await client.get("/v2/models/", headers={"X-Big": "a" * 1100})
    assert resp.status == 400
    resp = await client.get("/v2/models/?q=" + "a" * 1100)
    assert resp.status == 400


async def test_too_many_headers_is_400(limited):
    client = await limited(max_headers=20)
    resp = await client.get("/v2/models/", headers={f"X-{i}": "a" for i in range(10)})
    assert resp.status == 200
    resp = await client.get("/v2/models/", headers={f"X-{i}": "a" for i in range(30)})
    assert resp.status == 400


async def test_slow_headers_are_cut_off_while_others_are_served(limited):
    client = await limited(header_timeout=1.0)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    started = time.monotonic()
    writer.write(b"GET /v2/models/ HTTP/1.1\r\nHost: x\r\n")
    try:

        async def trickle():
            for byte in b"X-Slow: " + b"a" * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)

        trickling = asyncio.ensure_future(trickle())
        # Another client is served meanwhile.
        resp = await client.get("/v2/models/")
        assert resp.status == 200
        assert await asyncio.wait_for(reader.read(), 5) == b""
        closed = time.monotonic() - started
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
    finally:
        writer.close()
    assert 0.8 < closed < 3
