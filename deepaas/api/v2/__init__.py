"""The v2 sub-application: only the routes the configuration enables."""

from __future__ import annotations

from aiohttp import web

from deepaas.api import versions
from deepaas.api.v2 import debug, models, predict, train
from deepaas.config import Config

__all__ = ["create_v2_app"]


def create_v2_app(config: Config) -> web.Application:
    """Build the application mounted at ``/v2`` (a disabled endpoint is absent)."""
    app = web.Application()
    app.router.add_get("/", versions.v2_version, name="v2", allow_head=False)
    app.add_routes(models.routes)
    if config.predict_endpoint:
        app.add_routes(predict.routes)
    if config.train_endpoint:
        app.add_routes(train.routes)
    if config.debug_endpoint:
        app.add_routes(debug.routes)
        app.cleanup_ctx.append(debug.capture)
    return app
