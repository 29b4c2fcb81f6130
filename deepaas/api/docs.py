"""Temporary stand-in until the OpenAPI documents land (being written)."""

from __future__ import annotations

from aiohttp import web

from deepaas.api.keys import CONFIG


def setup_docs(
    app: web.Application, *, title: str, version: str, description: str
) -> None:
    """Add the documentation routes."""
    base = app[CONFIG].base_path

    async def spec(request: web.Request) -> web.Response:
        return web.json_response({"title": title, "version": version})

    app.router.add_get(f"{base}/swagger.json", spec, name="swagger.spec")
    app.router.add_get(f"{base}/api", spec, name="swagger.docs")
