"""The HTTP layer: the application factory, its state keys and server plugins."""

from deepaas.api.app import create_app
from deepaas.api.plugins import Plugin, load_plugins

__all__ = ["Plugin", "create_app", "load_plugins"]
