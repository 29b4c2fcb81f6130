"""``POST /v2/models/{model_name}/predict/``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web

from deepaas.api import _lookup, args, media
from deepaas.api.keys import ARGSPECS, PREDICTORS
from deepaas.model.v2.wrapper import ACCEPT

__all__ = ["routes"]

routes = web.RouteTableDef()
T = TypeVar("T")


@routes.post("/models/{model_name}/predict/")
async def predict(request: web.Request) -> web.StreamResponse:
    """Validate the arguments, run the prediction and answer in the chosen type."""
    model = _lookup.model(request)
    spec = request.config_dict[ARGSPECS][model.name].predict
    arguments = await args.parse(request, spec)
    try:
        kwargs = arguments.values
        media_type = (
            kwargs.get(ACCEPT, media.JSON_TYPE)
            if spec.accept_choices
            else media.JSON_TYPE
        )
        predictor = request.config_dict[PREDICTORS][model.name]
        result = await _unless_gone(
            request, predictor.run(kwargs, abandoned=lambda: _gone(request))
        )
        answer = media.respond(model, result, media_type)
        if isinstance(answer, web.StreamResponse):
            return answer
        return await answer.send(request)
    finally:
        if arguments.has_files:
            # Shielded: a client that hangs up must not leave its uploads behind.
            await asyncio.shield(asyncio.to_thread(arguments.cleanup))


# How often a waiting prediction checks that its client is still connected.
_GONE_POLL_S = 0.1


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _unless_gone(request: web.Request, call: Awaitable[T]) -> T:
    """Await ``call``, cancelling it if the client disconnects first.

    A disconnect does not cancel handlers (aiohttp's default); without this, a
    call queued for a busy model would still run, for nobody.
    """
    task = asyncio.ensure_future(call)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_GONE_POLL_S)
            if done:
                return task.result()
            if _gone(request):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise asyncio.CancelledError("the client disconnected")
    finally:
        if not task.done():
            task.cancel()
