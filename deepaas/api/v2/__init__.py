"""The v2 routes: only those the configuration enables, under ``/v2``."""

from __future__ import annotations

from aiohttp import web

from deepaas.api import versions
from deepaas.api.v2 import debug, models, predict, train
from deepaas.config import Config

__all__ = ["add_v2_routes"]


def add_v2_routes(app: web.Application, config: Config, prefix: str) -> None:
    """Add the v2 routes to ``app`` under ``prefix`` (a disabled endpoint is absent).

    They go in ``app``'s own router, not a sub-application's: one lookup and one
    middleware fewer for every request.
    """
    app.router.add_get(f"{prefix}/", versions.v2_version, name="v2", allow_head=False)
    tables = []
    # The router tries the routes under /v2/models in the order they were
    # added: the one called most often comes first.
    if config.predict_endpoint:
        tables.append(predict.routes)
    tables.append(models.routes)
    if config.train_endpoint:
        tables.append(train.routes)
    if config.debug_endpoint:
        tables.append(debug.routes)
        app.cleanup_ctx.append(debug.capture)
    for table in tables:
        for route in table:
            assert isinstance(route, web.RouteDef)
            web.RouteDef(
                route.method, prefix + route.path, route.handler, route.kwargs
            ).register(app.router)
