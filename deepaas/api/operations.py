"""The endpoints for those who run the server: probes and metrics.

``/healthz`` and ``/readyz`` (routes ``health.alive`` and ``health.ready``) and,
with the metrics endpoint, ``/metrics`` (route ``metrics``), all under the base
path. They are left out of the access log unless ``access_log_probes`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from deepaas.api import health
from deepaas.api.keys import CONFIG, METRICS, OBSERVER, PREDICTORS
from deepaas.api.metrics import handle_metrics, sampling

__all__ = ["PROBE_ROUTES", "setup_operations"]

PROBE_ROUTES = ("health.alive", "health.ready", "metrics")
"""Names of the routes added here."""


def setup_operations(app: web.Application) -> None:
    """Add the probe and metrics routes to ``app`` (the root application).

    ``app[CONFIG]``, ``app[OBSERVER]`` and, with the metrics endpoint,
    ``app[METRICS]`` must be set.
    """
    base = app[CONFIG].base_path
    resources = [
        app.router.add_get(f"{base}/healthz", health.alive, name="health.alive"),
        app.router.add_get(f"{base}/readyz", health.ready, name="health.ready"),
    ]
    if METRICS in app:
        resources.append(
            app.router.add_get(
                f"{base}/metrics", handle_metrics, name="metrics", allow_head=False
            )
        )
        if app[METRICS].multiprocess_dir is not None:
            app.cleanup_ctx.append(_sampling)
    app[OBSERVER].quiet.update(route.resource for route in resources if route.resource)


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    observer = app[OBSERVER]
    async with sampling(app[METRICS], lambda: observer.in_flight, app[PREDICTORS]):
        yield
