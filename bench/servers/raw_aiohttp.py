"""A bare aiohttp server doing the bench models' work: the ceiling.

It serves the URLs and JSON envelope of the DEEPaaS v2 API for the bench
models, with no argument validation, no worker processes and no access log:

* ``GET /v2/models/`` lists the models (the readiness probe);
* ``POST /v2/models/echo/predict/?text=...`` echoes ``text``;
* ``POST /v2/models/mlp/predict/?data=...`` runs the MLP inline in the loop;
* ``POST /v2/models/upload/predict/`` hashes the multipart field ``file``.

Run: ``python raw_aiohttp.py --port 8080`` with the bench models installed.
"""

import argparse
import hashlib

from aiohttp import web
from deepaas_bench_models import mlp

MODELS = ("echo", "mlp", "upload")


def envelope(predictions):
    return web.json_response({"status": "OK", "predictions": predictions})


def missing(name):
    return web.json_response({name: ["Missing data for required field."]}, status=422)


async def index(request):
    return web.json_response({"models": [{"id": m, "name": m} for m in MODELS]})


async def echo(request):
    if "text" not in request.query:
        return missing("text")
    return envelope({"echo": request.query["text"]})


async def mlp_predict(request):
    if "data" not in request.query:
        return missing("data")
    try:
        return envelope(mlp.predict(data=request.query["data"]))
    except ValueError as exc:
        return web.json_response({"data": [str(exc)]}, status=422)


async def upload(request):
    """Stream the ``file`` part through sha256, never holding it whole."""
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            return missing("file")
        if part.name != "file":
            await part.release()
            continue
        h, size = hashlib.sha256(), 0
        while True:
            chunk = await part.read_chunk(1 << 16)
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
        return envelope({"size": size, "sha256": h.hexdigest()})


def make_app():
    app = web.Application(client_max_size=0)
    app.router.add_get("/v2/models/", index)
    app.router.add_post("/v2/models/echo/predict/", echo)
    app.router.add_post("/v2/models/mlp/predict/", mlp_predict)
    app.router.add_post("/v2/models/upload/predict/", upload)
    return app


def main():
    parser = argparse.ArgumentParser(description="Bare aiohttp bench server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    mlp.warm()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
