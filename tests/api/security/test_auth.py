"""Bearer tokens on a served application: 401, 403 and the scope of each route."""

import logging

import pytest
from aiohttp import web

from deepaas.api import create_app
from deepaas.api.security import PUBLIC, Scope, declare, public, requires
from deepaas.config import Config
from tests.api.security.conftest import (
    ADMIN_TOKEN,
    PREDICT_TOKEN,
    TRAIN_TOKEN,
    bearer,
)

PREDICT = "/v2/models/legacy/predict/"
TRAIN = "/v2/models/legacy/train/"


async def test_no_token_is_401_with_a_bearer_challenge(auth_client):
    resp = await auth_client.post(PREDICT)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="deepaas"'
    body = await resp.json()
    assert "Authorization: Bearer <token>" in body["message"]


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Token " + PREDICT_TOKEN, ""],
)
async def test_other_schemes_count_as_no_token(auth_client, header):
    resp = await auth_client.post(PREDICT, headers={"Authorization": header})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="deepaas"'


async def test_unknown_token_is_401_invalid_token(auth_client):
    resp = await auth_client.post(PREDICT, headers=bearer("not-a-known-token"))
    assert resp.status == 401
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="deepaas", error="invalid_token"')
    assert 'error_description="Unknown token"' in challenge
    assert (await resp.json())["message"] == "Unknown token"


async def test_malformed_token_is_401(auth_client):
    resp = await auth_client.post(PREDICT, headers=bearer("two words"))
    assert resp.status == 401
    assert (await resp.json())["message"] == "Malformed bearer token"


async def test_scheme_is_case_insensitive(auth_client):
    resp = await auth_client.post(
        PREDICT, headers={"Authorization": f"bearer {PREDICT_TOKEN}"}
    )
    assert resp.status == 200


async def test_wrong_scope_is_403_naming_the_scope(auth_client):
    resp = await auth_client.post(PREDICT, headers=bearer(TRAIN_TOKEN))
    assert resp.status == 403
    assert resp.headers["WWW-Authenticate"] == (
        'Bearer realm="deepaas", error="insufficient_scope", scope="predict"'
    )
    assert (await resp.json())["message"] == (
        "This route needs a token with the 'predict' scope"
    )


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v2/models/", "predict"),
        ("GET", "/v2/models/legacy/", "predict"),
        ("POST", PREDICT, "predict"),
        ("POST", TRAIN, "train"),
        ("GET", TRAIN, "train"),
        ("GET", TRAIN + "0123", "train"),
        ("GET", TRAIN + "0123/logs", "train"),
        ("DELETE", TRAIN + "0123", "train"),
        ("GET", "/v2/debug/", "admin"),
    ],
)
async def test_each_route_needs_its_scope(auth_client, method, path, scope):
    tokens = {"predict": PREDICT_TOKEN, "train": TRAIN_TOKEN, "admin": ADMIN_TOKEN}
    for name, token in tokens.items():
        resp = await auth_client.request(method, path, headers=bearer(token))
        if name in (scope, "admin"):
            # Allowed: the route's own answer (404 for an unknown training).
            assert resp.status in (200, 404), (name, await resp.text())
            if resp.status == 404:
                assert "not found" in (await resp.json())["message"]
        else:
            assert resp.status == 403, name
            assert f"'{scope}' scope" in (await resp.json())["message"]
        resp = await auth_client.request(method, path)
        assert resp.status == 401


async def test_admin_trains_and_predicts(auth_client):
    resp = await auth_client.post(
        PREDICT, json={"count": 2}, headers=bearer(ADMIN_TOKEN)
    )
    assert resp.status == 200
    assert (await resp.json())["predictions"]["count"] == 2


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),
        ("/v2/", 200),
        ("/swagger.json", 200),
        ("/openapi.json", 200),
        ("/api", 200),
        ("/api/", 200),
        ("/api/static/swagger-ui.css", 200),
        ("/ui", 302),
    ],
)
async def test_versions_and_documentation_are_public(auth_client, path, status):
    resp = await auth_client.get(path, allow_redirects=False)
    assert resp.status == status


async def test_unknown_paths_and_redirects_need_no_token(auth_client):
    resp = await auth_client.get("/nowhere")
    assert resp.status == 404
    resp = await auth_client.post(PREDICT.rstrip("/"), allow_redirects=False)
    assert resp.status == 308
    resp = await auth_client.get(PREDICT)
    assert resp.status == 405


async def test_tokens_from_the_environment_variable(aiohttp_client, config, models):
    app = create_app(config.replace(auth_tokens="env-token-abc predict"), models)
    client = await aiohttp_client(app)
    assert (await client.post(PREDICT, headers=bearer("env-token-abc"))).status == 200
    assert (await client.post(PREDICT)).status == 401


def test_without_auth_no_middleware_is_installed(config, models, token_file):
    open_app = create_app(config, models)
    closed = create_app(config.replace(auth_token_file=str(token_file)), models)
    assert len(closed.middlewares) == len(open_app.middlewares) + 1
    assert "check_token" not in [m.__name__ for m in open_app.middlewares]


async def test_auth_none_serves_openly(aiohttp_client, config, models):
    client = await aiohttp_client(create_app(config.replace(auth="none"), models))
    assert (await client.post(PREDICT)).status == 200


def _plugin(app):
    async def undeclared(request):
        return web.json_response({"route": "undeclared"})

    @public
    async def open_route(request):
        return web.json_response({"route": "open"})

    @requires(Scope.TRAIN)
    async def trainers(request):
        return web.json_response({"route": "trainers"})

    app.router.add_get("/plugin/undeclared", undeclared)
    app.router.add_get("/plugin/open", open_route)
    app.router.add_get("/plugin/trainers", trainers)
    static = app.router.add_static("/plugin/files/", __file__.rsplit("/", 1)[0])
    declare(app, static, PUBLIC)


async def test_plugin_routes_declare_their_access(aiohttp_client, auth_config, models):
    app = create_app(auth_config, models, plugins=[("p", _plugin)])
    client = await aiohttp_client(app)
    assert (await client.get("/plugin/open")).status == 200
    assert (await client.get("/plugin/files/__init__.py")).status == 200
    assert (await client.get("/plugin/trainers")).status == 401
    resp = await client.get("/plugin/trainers", headers=bearer(TRAIN_TOKEN))
    assert resp.status == 200
    # Declared nowhere: closed to all but admin.
    assert (
        await client.get("/plugin/undeclared", headers=bearer(TRAIN_TOKEN))
    ).status == 403
    resp = await client.get("/plugin/undeclared", headers=bearer(ADMIN_TOKEN))
    assert resp.status == 200


async def test_tokens_are_never_logged(aiohttp_client, auth_config, models, caplog):
    caplog.set_level(logging.DEBUG)
    client = await aiohttp_client(create_app(auth_config, models))
    for token in (PREDICT_TOKEN, TRAIN_TOKEN, "not-a-known-token-xyz"):
        await client.post(PREDICT, headers=bearer(token))
    assert caplog.records
    for token in (PREDICT_TOKEN, TRAIN_TOKEN, ADMIN_TOKEN, "not-a-known-token-xyz"):
        assert token not in caplog.text


def test_unreadable_token_file_fails_the_build(config, models, tmp_path):
    config = config.replace(auth_token_file=str(tmp_path / "absent"))
    with pytest.raises(Exception, match="cannot read the token file"):
        create_app(config, models)


def test_config_repr_hides_environment_tokens():
    assert "abc" not in repr(Config(auth_tokens="abc predict"))
