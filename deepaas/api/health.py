"""Liveness and readiness: ``GET /healthz`` and ``GET /readyz``.

Both are cheap enough to be probed every second. ``/healthz`` answers as soon as
the event loop does; ``/readyz`` answers 200 only once every served model is
loaded and warmed and, with the ``process`` executor, all its worker processes
run; otherwise 503 with the reasons.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

from deepaas.api.keys import HEALTH, PREDICTORS
from deepaas.api.security.access import public
from deepaas.model.predictor import Predictor

__all__ = ["Health", "alive", "ready"]

_ALIVE = json.dumps({"status": "alive"}).encode()
_READY = json.dumps({"status": "ready"}).encode()


class Health:
    """Where the server is in its life: starting, serving or stopping."""

    def __init__(self) -> None:
        self.starting = True
        self.stopping = False

    def problems(self, predictors: Mapping[str, Predictor]) -> list[str]:
        """Why the server is not ready to serve predictions; empty when it is."""
        if self.stopping:
            return ["the server is shutting down"]
        if self.starting:
            return ["the models are being loaded and warmed"]
        found = []
        for name, predictor in predictors.items():
            pool = predictor.pool
            dead = pool.dead_workers() if pool is not None else []
            if dead:
                found.append(
                    f"model '{name}': worker processes not running: {', '.join(dead)}"
                )
        return found


@public
async def alive(request: web.Request) -> web.Response:
    """``GET /healthz``: the server's event loop answers."""
    return web.Response(body=_ALIVE, content_type="application/json")


@public
async def ready(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when every model can serve, else 503 and why not."""
    app = request.app
    problems = app[HEALTH].problems(app[PREDICTORS])
    if problems:
        message = "Not ready: " + "; ".join(problems)
        return web.json_response({"message": message, "reasons": problems}, status=503)
    return web.Response(body=_READY, content_type="application/json")
