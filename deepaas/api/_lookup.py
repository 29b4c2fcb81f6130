"""Resolving the objects a request names, shared by the v2 handlers."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from deepaas.api.keys import MODELS
from deepaas.exceptions import ModelNotFound
from deepaas.model.v2.wrapper import ModelWrapper


def model(request: web.Request) -> ModelWrapper:
    """The model named by ``{model_name}`` in the path (404 when not served)."""
    name = request.match_info["model_name"]
    try:
        # The v2 routes are the root application's own, where the state is.
        return request.app[MODELS][name]
    except KeyError:
        raise ModelNotFound(name) from None


async def metadata(model: ModelWrapper) -> dict[str, Any]:
    """The model's metadata, fetched off the event loop (models may do I/O)."""
    return await asyncio.to_thread(model.metadata)
