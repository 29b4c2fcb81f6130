"""Training routes: start, list, show and cancel trainings of a model."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from deepaas.api import _lookup, args
from deepaas.api.keys import ARGSPECS, CONFIG, JOBS
from deepaas.jobs import Job, JobStatus

__all__ = ["job_record", "routes"]

routes = web.RouteTableDef()


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_record(job: Job) -> dict[str, Any]:
    """The JSON record of a training: 2.x's keys first, then ours."""
    record: dict[str, Any] = {
        "uuid": job.uuid,
        "date": str(job.created),
        "args": job.args,
        "status": job.status.value,
    }
    if job.status is JobStatus.DONE:
        record["result"] = {
            "output": job.result,
            "finish_date": str(job.finished),
            "duration": str(job.duration),
        }
    if job.message is not None and job.status is not JobStatus.DONE:
        record["message"] = job.message
    record["model"] = job.model
    record["created"] = _iso(job.created)
    record["started"] = _iso(job.started)
    record["finished"] = _iso(job.finished)
    duration = job.duration
    record["duration"] = duration.total_seconds() if duration is not None else None
    return record


@routes.post("/models/{model_name}/train/")
async def start(request: web.Request) -> web.Response:
    """Start a training and answer its record at once."""
    model = _lookup.model(request)
    spec = request.config_dict[ARGSPECS][model.name].train
    arguments = await args.parse(
        request, spec, max_size=request.config_dict[CONFIG].client_max_size
    )
    try:
        job = await request.config_dict[JOBS].start(
            model,
            arguments.values,
            public_args=arguments.public(),
            cleanup=arguments.cleanup,
        )
    except BaseException:
        # Shielded: a client that hangs up must not leave its uploads behind.
        await asyncio.shield(asyncio.to_thread(arguments.cleanup))
        raise
    return web.json_response(job_record(job))


@routes.get("/models/{model_name}/train/", allow_head=False)
async def index(request: web.Request) -> web.Response:
    """List the trainings of a model (a bare JSON list, as 2.x)."""
    model = _lookup.model(request)
    jobs = request.config_dict[JOBS].list(model.name)
    return web.json_response([job_record(j) for j in jobs])


@routes.get("/models/{model_name}/train/{uuid}", allow_head=False)
async def show(request: web.Request) -> web.Response:
    """Show one training."""
    model = _lookup.model(request)
    job = request.config_dict[JOBS].get(model.name, request.match_info["uuid"])
    return web.json_response(job_record(job))


@routes.delete("/models/{model_name}/train/{uuid}")
async def delete(request: web.Request) -> web.Response:
    """Cancel a training if it still runs, and remove it (as 2.x)."""
    model = _lookup.model(request)
    job = await request.config_dict[JOBS].delete(model.name, request.match_info["uuid"])
    return web.json_response(job_record(job))
