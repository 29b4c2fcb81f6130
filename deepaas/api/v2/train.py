"""Training routes: start, list, show and cancel trainings of a model."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from deepaas.api import _lookup, args
from deepaas.api.keys import ARGSPECS, JOBS
from deepaas.api.security.access import Scope, requires
from deepaas.exceptions import JobNotFound
from deepaas.jobs import Job, JobStatus
from deepaas.log import JOB_ID

__all__ = ["job_record", "routes"]

routes = web.RouteTableDef()
# How often a followed log is checked for new output.
FOLLOW_POLL_S = 0.25


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_record(job: Job, progress: dict[str, Any] | None = None) -> dict[str, Any]:
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
    record["progress"] = progress
    return record


def _job_id(request: web.Request) -> str:
    """The job id of the path; lines logged while answering name it."""
    job_id = request.match_info["uuid"]
    JOB_ID.set(job_id)
    return job_id


def _record(request: web.Request, job: Job) -> dict[str, Any]:
    return job_record(job, request.app[JOBS].progress(job.uuid))


@routes.post("/models/{model_name}/train/")
@requires(Scope.TRAIN)
async def start(request: web.Request) -> web.Response:
    """Start a training and answer its record at once."""
    model = _lookup.model(request)
    spec = request.app[ARGSPECS][model.name].train
    arguments = await args.parse(request, spec)
    try:
        job = await request.app[JOBS].start(
            model,
            arguments.values,
            public_args=arguments.public(),
            cleanup=arguments.cleanup,
        )
    except BaseException:
        if arguments.has_files:
            # A client that hangs up must not leave its uploads behind.
            await arguments.discard()
        raise
    JOB_ID.set(job.uuid)
    return web.json_response(_record(request, job))


@routes.get("/models/{model_name}/train/", allow_head=False)
@requires(Scope.TRAIN)
async def index(request: web.Request) -> web.Response:
    """List the trainings of a model (a bare JSON list, as 2.x)."""
    model = _lookup.model(request)
    jobs = request.app[JOBS].list(model.name)
    return web.json_response([_record(request, j) for j in jobs])


@routes.get("/models/{model_name}/train/{uuid}", allow_head=False)
@requires(Scope.TRAIN)
async def show(request: web.Request) -> web.Response:
    """Show one training."""
    model = _lookup.model(request)
    job = request.app[JOBS].get(model.name, _job_id(request))
    return web.json_response(_record(request, job))


@routes.get("/models/{model_name}/train/{uuid}/logs", allow_head=False)
@requires(Scope.TRAIN)
async def logs(request: web.Request) -> web.StreamResponse:
    """What a training printed: as text, or followed as Server-Sent Events."""
    model = _lookup.model(request)
    manager = request.app[JOBS]
    job_id = _job_id(request)
    manager.get(model.name, job_id)
    path = manager.log_path(job_id)
    follow = request.query.get("follow", "").lower() in ("true", "1", "yes")
    if follow or "text/event-stream" in request.headers.get("Accept", ""):
        return await _follow(request, model.name, job_id, path)
    text = await asyncio.to_thread(_read_from, path, 0)
    return web.Response(text=text.decode(errors="replace"), content_type="text/plain")


def _read_from(path: str, offset: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read()
    except FileNotFoundError:
        return b""


async def _follow(
    request: web.Request, model: str, job_id: str, path: str
) -> web.StreamResponse:
    manager = request.app[JOBS]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    offset, pending = 0, b""
    while True:
        # Read the status first: output written before the end is then all sent.
        try:
            status = manager.get(model, job_id).status
        except JobNotFound:
            status = JobStatus.CANCELLED  # removed meanwhile: nothing more comes
        chunk = await asyncio.to_thread(_read_from, path, offset)
        offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            await response.write(_event(line.decode(errors="replace")))
        if status.finished:
            if pending:
                await response.write(_event(pending.decode(errors="replace")))
            await response.write(_event(status.value, event="end"))
            break
        await asyncio.sleep(FOLLOW_POLL_S)
    await response.write_eof()
    return response


def _event(data: str, *, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data.rstrip(chr(13))}\n\n".encode()


@routes.delete("/models/{model_name}/train/{uuid}")
@requires(Scope.TRAIN)
async def delete(request: web.Request) -> web.Response:
    """Cancel a training if it still runs, and remove it (as 2.x)."""
    model = _lookup.model(request)
    job = await request.app[JOBS].delete(model.name, _job_id(request))
    return web.json_response(_record(request, job))
