"""The documentation routes: specifications, the Swagger UI page and its assets."""

import re

import pytest
from aiohttp import web
from yarl import URL

from deepaas.api.docs import setup_docs, swagger_ui_dir
from deepaas.api.keys import CONFIG, MODELS
from deepaas.config import Config
from deepaas.model.loading import wrap

INFO = {"title": "Docs <test>", "version": "1.0", "description": "For tests"}


class Tiny:
    @staticmethod
    def predict(**kwargs):
        return kwargs


def _app(**config):
    app = web.Application()
    app[CONFIG] = Config(**config)
    app[MODELS] = {"tiny": wrap("tiny", Tiny)}
    setup_docs(app, **INFO)
    return app


@pytest.fixture
async def client(aiohttp_client):
    return await aiohttp_client(_app())


async def test_swagger_json(client):
    response = await client.get("/swagger.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["swagger"] == "2.0"
    assert "/v2/models/tiny/predict/" in body["paths"]


async def test_openapi_json(client):
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["openapi"] == "3.1.0"
    assert body["info"]["title"] == INFO["title"]


async def test_documents_are_built_once(aiohttp_client, monkeypatch):
    import deepaas.api.docs as docs

    calls = []
    real = docs.build_openapi

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(docs, "build_openapi", counting)
    client = await aiohttp_client(_app())
    for _ in range(3):
        assert (await client.get("/openapi.json")).status == 200
    assert len(calls) == 1


@pytest.mark.parametrize("path", ["/api", "/api/"])
async def test_page_uses_local_assets_only(client, path):
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert "http://" not in page
    assert "https://" not in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets
    assert all(a.startswith("/api/static/") for a in assets), assets
    assert "/swagger.json" in page
    assert "Docs &lt;test&gt;" in page
    # Swagger UI renders OpenAPI 3.1 from version 5 on.
    if int(re.search(r"(\d+)\.", swagger_ui_dir().name).group(1)) >= 5:
        assert "/openapi.json" in page


async def test_page_assets_are_served(client):
    page = await (await client.get("/api")).text()
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page):
        response = await client.get(asset)
        assert response.status == 200, asset
    css = await client.get("/api/static/swagger-ui.css")
    assert css.content_type == "text/css"
    js = await client.get("/api/static/swagger-ui-bundle.js")
    assert js.content_type in ("text/javascript", "application/javascript")


@pytest.mark.parametrize(
    "raw",
    [
        "/api/static/%2e%2e/%2e%2e/__init__.py",
        "/api/static/..%2f..%2f__init__.py",
        "/api/static/%2e%2e%2f%2e%2e%2f__init__.py",
        "/api/static/../../../../../../etc/passwd",
        "/api/static//etc/passwd",
        "/api/static/%2Fetc%2Fpasswd",
    ],
)
async def test_static_traversal_is_refused(client, raw):
    response = await client.get(URL(raw, encoded=True))
    assert response.status in (403, 404), raw
    body = await response.read()
    assert b"swagger_ui_path" not in body
    assert b"root:" not in body


async def test_ui_redirects_to_api(client):
    response = await client.get("/ui", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/api"


async def test_base_path(aiohttp_client):
    client = await aiohttp_client(_app(base_path="/deepaas"))
    page = await (await client.get("/deepaas/api")).text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert all(a.startswith("/deepaas/api/static/") for a in assets)
    assert "/deepaas/swagger.json" in page
    assert (await client.get("/deepaas/api/static/swagger-ui.css")).status == 200
    redirect = await client.get("/deepaas/ui", allow_redirects=False)
    assert redirect.headers["Location"] == "/deepaas/api"
    spec = await (await client.get("/deepaas/swagger.json")).json()
    assert "/deepaas/v2/models/tiny/predict/" in spec["paths"]
    assert (await client.get("/swagger.json")).status == 404


async def test_without_doc_endpoint(aiohttp_client):
    app = _app(doc_endpoint=False)
    client = await aiohttp_client(app)
    for path in ("/api", "/api/", "/ui", "/api/static/swagger-ui.css"):
        assert (await client.get(path, allow_redirects=False)).status == 404
    assert (await client.get("/swagger.json")).status == 200
    assert (await client.get("/openapi.json")).status == 200
    names = app.router.named_resources()
    assert "swagger.spec" in names
    assert "openapi.spec" in names
    assert "swagger.docs" not in names


async def test_route_names(aiohttp_client):
    app = _app(base_path="/x")
    names = app.router.named_resources()
    assert str(names["swagger.spec"].url_for()) == "/x/swagger.json"
    assert str(names["openapi.spec"].url_for()) == "/x/openapi.json"
    assert str(names["swagger.docs"].url_for()) == "/x/api"


async def test_a_document_that_cannot_be_built_is_a_500(aiohttp_client, monkeypatch):
    import deepaas.api.docs as docs

    def broken(*args, **kwargs):
        raise ValueError("cannot describe")

    monkeypatch.setattr(docs, "build_openapi", broken)
    client = await aiohttp_client(_app())
    response = await client.get("/openapi.json")
    assert response.status == 500
    assert "message" in await response.json()
    assert (await client.get("/swagger.json")).status == 200
