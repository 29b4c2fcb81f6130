"""CORS: off by default; preflights and answers for the configured origins."""

import pytest

from deepaas.api import create_app
from tests.api.security.conftest import PREDICT_TOKEN, bearer

ALLOWED = "https://portal.example.org"
PREDICT = "/v2/models/legacy/predict/"


def _preflight(origin, method="POST", headers="authorization, content-type"):
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


@pytest.fixture
async def cors_client(aiohttp_client, config, models):
    config = config.replace(cors_origins=(ALLOWED, "http://localhost:8080"))
    return await aiohttp_client(create_app(config, models))


async def test_off_by_default(client):
    resp = await client.options(PREDICT, headers=_preflight(ALLOWED))
    assert resp.status == 405
    resp = await client.get("/v2/models/", headers={"Origin": ALLOWED})
    assert resp.status == 200
    assert not any(h.lower().startswith("access-control-") for h in resp.headers)
    assert "Vary" not in resp.headers


async def test_preflight_from_an_allowed_origin(cors_client):
    resp = await cors_client.options(PREDICT, headers=_preflight(ALLOWED))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST, DELETE"
    assert resp.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert resp.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert "Origin" in resp.headers["Vary"]


async def test_preflight_from_another_origin_is_refused(cors_client):
    resp = await cors_client.options(
        PREDICT, headers=_preflight("https://evil.example")
    )
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "evil.example" in (await resp.json())["message"]


async def test_simple_request_from_an_allowed_origin(cors_client):
    resp = await cors_client.post(PREDICT, headers={"Origin": "http://localhost:8080"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    assert "WWW-Authenticate" in resp.headers["Access-Control-Expose-Headers"]
    assert "Origin" in resp.headers["Vary"]


async def test_simple_request_from_another_origin_gets_no_cors_headers(cors_client):
    resp = await cors_client.post(PREDICT, headers={"Origin": "https://evil.example"})
    # The server answers; the browser keeps the answer from the page.
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Origin" in resp.headers["Vary"]


async def test_non_preflight_options_is_still_405(cors_client):
    resp = await cors_client.options(PREDICT, headers={"Origin": ALLOWED})
    assert resp.status == 405
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_any_origin(aiohttp_client, config, models):
    client = await aiohttp_client(
        create_app(config.replace(cors_origins=("*",)), models)
    )
    resp = await client.get("/v2/models/", headers={"Origin": "https://any.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await client.options(PREDICT, headers=_preflight("https://any.example"))
    assert resp.status == 204


async def test_preflight_needs_no_token_and_errors_carry_cors_headers(
    aiohttp_client, auth_config, models
):
    config = auth_config.replace(cors_origins=(ALLOWED,))
    client = await aiohttp_client(create_app(config, models))
    resp = await client.options(PREDICT, headers=_preflight(ALLOWED))
    assert resp.status == 204
    # A 401 the page can read, to ask its user for a token.
    resp = await client.post(PREDICT, headers={"Origin": ALLOWED})
    assert resp.status == 401
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
    resp = await client.post(
        PREDICT, headers={"Origin": ALLOWED, **bearer(PREDICT_TOKEN)}
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_redirects_carry_cors_headers(cors_client):
    resp = await cors_client.post(
        PREDICT.rstrip("/"), headers={"Origin": ALLOWED}, allow_redirects=False
    )
    assert resp.status == 308
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
