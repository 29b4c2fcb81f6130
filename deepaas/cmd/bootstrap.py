"""The composition root shared by ``deepaas-run`` and the gunicorn entry point."""

from __future__ import annotations

from aiohttp import web

from deepaas.api import create_app, load_plugins
from deepaas.config import Config
from deepaas.model import load_models

__all__ = ["build_app"]


def build_app(config: Config) -> web.Application:
    """Load the configured models and plugins and build the application.

    Raises:
        DeepaasError: A model or plugin cannot be loaded.
    """
    models = load_models(config.model_names)
    plugins = load_plugins(config.plugins)
    return create_app(config, models, plugins=plugins)
