"""The composition root shared by ``deepaas-run`` and the gunicorn entry point."""

from __future__ import annotations

from aiohttp import web

from deepaas.api import create_app, load_plugins
from deepaas.config import Config
from deepaas.model import load_models

__all__ = ["build_app"]


def build_app(
    config: Config,
    *,
    server_pid: int | None = None,
    upload_dir: str | None = None,
    metrics_dir: str | None = None,
) -> web.Application:
    """Load the configured models and plugins and build the application.

    Args:
        config: Server settings.
        server_pid: The pid of the whole server: the gunicorn master when
            several HTTP workers build an application each; by default this one.
        upload_dir: Where requests keep their uploads; by default the system's
            temporary directory.
        metrics_dir: The metrics directory the HTTP workers share (see
            :func:`deepaas.api.create_app`).

    Raises:
        DeepaasError: A model or plugin cannot be loaded.
    """
    models = load_models(config.model_names)
    plugins = load_plugins(config.plugins)
    return create_app(
        config,
        models,
        plugins=plugins,
        server_pid=server_pid,
        metrics_dir=metrics_dir,
        upload_dir=upload_dir,
    )
