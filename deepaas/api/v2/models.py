"""``GET /v2/models/`` and ``GET /v2/models/{model_name}/``: what is served."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from deepaas.api import _lookup
from deepaas.api.keys import MODELS
from deepaas.api.security.access import Scope, requires
from deepaas.model.v2.wrapper import ModelWrapper

__all__ = ["routes"]

routes = web.RouteTableDef()


async def _describe(model: ModelWrapper, href: str) -> dict[str, Any]:
    # Metadata keys override id and name, as in 2.x.
    meta = {
        "id": model.name,
        "name": model.name,
        "links": [{"rel": "self", "href": href}],
    }
    meta.update(await _lookup.metadata(model))
    return meta


@routes.get("/models/", allow_head=False)
@requires(Scope.PREDICT)
async def index(request: web.Request) -> web.Response:
    """List the served models with their metadata."""
    base = request.path.rstrip("/")
    models = [
        await _describe(model, f"{base}/{name}")
        for name, model in request.app[MODELS].items()
    ]
    return web.json_response({"models": models})


@routes.get("/models/{model_name}/", allow_head=False)
@requires(Scope.PREDICT)
async def show(request: web.Request) -> web.Response:
    """Describe one model."""
    model = _lookup.model(request)
    return web.json_response(await _describe(model, request.path.rstrip("/")))
