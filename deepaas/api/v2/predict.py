"""``POST /v2/models/{model_name}/predict/``."""

from __future__ import annotations

from aiohttp import web

from deepaas.api import _lookup, args, media
from deepaas.api.keys import ARGSPECS, PREDICTORS
from deepaas.api.security.access import Scope, requires
from deepaas.model.v2.wrapper import ACCEPT

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/models/{model_name}/predict/")
@requires(Scope.PREDICT)
async def predict(request: web.Request) -> web.StreamResponse:
    """Validate the arguments, run the prediction and answer in the chosen type."""
    model = _lookup.model(request)
    app = request.app
    spec = app[ARGSPECS][model.name].predict
    predictor = app[PREDICTORS][model.name]
    if predictor.full:
        # Before the body is read: a refused upload is never stored.
        await predictor.admit()
    arguments = args.parse_query(request, spec)
    if arguments is None:
        arguments = await args.parse(request, spec)
    try:
        kwargs = arguments.values
        media_type = (
            kwargs.get(ACCEPT, media.JSON_TYPE)
            if spec.accept_choices
            else media.JSON_TYPE
        )
        # A client that hangs up is noticed when a worker becomes free for its
        # call, which is then dropped unrun: no task polls the connection.
        result = await predictor.run(kwargs, abandoned=lambda: _gone(request))
        answer = media.build_answer(model, result, media_type)
        if type(answer) is media.FileAnswer:
            return await answer.send(request)
        return answer  # type: ignore[return-value]
    finally:
        if arguments.has_files:
            # A client that hangs up must not leave its uploads behind.
            await arguments.discard()


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
