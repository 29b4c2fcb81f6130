"""Which asyncio event loop the server runs on.

uvloop (libuv under asyncio's interface) makes every socket read, write and
callback of the server cheaper; nothing in deepaas depends on it, so the
standard loop is the fallback where it is missing, or on request.
"""

from __future__ import annotations

import asyncio
import importlib.util

from deepaas.exceptions import ConfigurationError

__all__ = ["loop_name", "new_event_loop"]

UVLOOP = "uvloop"
ASYNCIO = "asyncio"


def loop_name(choice: str) -> str:
    """The loop ``choice`` (``auto``, ``asyncio`` or ``uvloop``) gives here.

    Raises:
        ConfigurationError: ``uvloop`` is asked for and is not installed.
    """
    if choice == ASYNCIO:
        return ASYNCIO
    installed = importlib.util.find_spec(UVLOOP) is not None
    if choice == UVLOOP and not installed:
        raise ConfigurationError(
            "event_loop 'uvloop' needs the uvloop package: pip install uvloop"
        )
    return UVLOOP if installed else ASYNCIO


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """A new event loop of the kind ``choice`` gives (see :func:`loop_name`)."""
    if loop_name(choice) == UVLOOP:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
