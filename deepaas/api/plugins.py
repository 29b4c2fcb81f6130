"""Server plugins: callables found in the ``deepaas.plugins`` namespace.

A plugin is ``setup(app: aiohttp.web.Application) -> None``, called once while
the application is built. It may add routes, sub-applications,
``on_startup``/``on_cleanup`` hooks and ``cleanup_ctx`` contexts, and read the
served models and configuration through the keys of :mod:`deepaas.api.keys`. The
marketplace and the dashboard are plugins of this kind. State a plugin needs must
be stored on the application in ``setup`` itself (aiohttp freezes the application
before start-up hooks run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import stevedore
from aiohttp import web

from deepaas.exceptions import ConfigurationError

__all__ = ["NAMESPACE", "Plugin", "load_plugins"]

NAMESPACE = "deepaas.plugins"
Plugin = Callable[[web.Application], None]


def load_plugins(names: Sequence[str] | None = None) -> list[tuple[str, Plugin]]:
    """Load the named plugins (every installed one when ``names`` is ``None``).

    Raises:
        ConfigurationError: A named plugin is not installed, or one fails to load.
    """
    installed = sorted(
        {
            ep.name
            for ep in stevedore.NamedExtensionManager(
                NAMESPACE, names=[]
            ).list_entry_points()
        }
    )
    chosen = installed if names is None else list(names)
    missing = [n for n in chosen if n not in installed]
    if missing:
        raise ConfigurationError(
            f"Plugin(s) not installed in '{NAMESPACE}': {', '.join(missing)}"
        )

    def fail(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        cause = f"{type(exc).__name__}: {exc}"
        raise ConfigurationError(
            f"Plugin '{entry_point.name}' could not be loaded: {cause}"
        ) from exc

    manager = stevedore.NamedExtensionManager(
        NAMESPACE, names=chosen, name_order=True, on_load_failure_callback=fail
    )
    return [(ext.name, ext.plugin) for ext in manager]
