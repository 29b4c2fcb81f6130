"""``GET /`` (API versions) and ``GET /v2/`` (the v2 version document)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from deepaas.api.security.access import public

__all__ = ["root", "v2_version"]


def _v2_entry(app: web.Application) -> dict[str, Any]:
    href = str(app.router["v2"].url_for())
    return {
        "version": "stable",
        "id": "v2",
        "links": [{"rel": "self", "type": "application/json", "href": href}],
    }


@public
async def v2_version(request: web.Request) -> web.Response:
    """Describe API v2."""
    return web.json_response(_v2_entry(request.app))


@public
async def root(request: web.Request) -> web.Response:
    """List the API versions and where the documentation lives."""
    links = []
    named = request.app.router.named_resources()
    for name, rel, media_type in (
        ("swagger.docs", "help", "text/html"),
        ("swagger.spec", "describedby", "application/json"),
    ):
        if name in named:
            href = str(named[name].url_for())
            links.append({"rel": rel, "type": media_type, "href": href})
    versions = [_v2_entry(request.app)]
    return web.json_response({"versions": versions, "links": links})
