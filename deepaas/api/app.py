"""The application factory: every piece of server state is built here."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence

from aiohttp import web

import deepaas
from deepaas.api import docs, security, versions
from deepaas.api.args import BodyOptions, ModelArgs
from deepaas.api.errors import answer_error
from deepaas.api.health import Health
from deepaas.api.keys import (
    ARGSPECS,
    BODY,
    CONFIG,
    HEALTH,
    JOBS,
    METRICS,
    MODELS,
    OBSERVER,
    PREDICTORS,
)
from deepaas.api.metrics import Metrics
from deepaas.api.observe import Observer
from deepaas.api.operations import setup_operations
from deepaas.api.plugins import Plugin
from deepaas.api.v2 import add_v2_routes
from deepaas.config import Config
from deepaas.jobs import JobManager, JobStore, MemoryJobStore, SQLiteJobStore
from deepaas.model.predictor import Predictor
from deepaas.model.v2.wrapper import ModelWrapper
from deepaas.telemetry import NO_TELEMETRY

__all__ = ["create_app"]

_LOG = logging.getLogger(__name__)

TITLE = "DEEP as a Service API endpoint"
DESCRIPTION = (
    "A REST API that gives access to machine learning models: their metadata, "
    "predictions and trainings. Each model's arguments and answers are described "
    "below."
)


def create_app(
    config: Config,
    models: Mapping[str, ModelWrapper],
    *,
    plugins: Sequence[tuple[str, Plugin]] = (),
    job_store: JobStore | None = None,
    server_pid: int | None = None,
    upload_dir: str | None = None,
    metrics_dir: str | None = None,
) -> web.Application:
    """Build the deepaas application serving ``models``.

    Args:
        config: Server settings.
        models: The models to serve, by name.
        plugins: ``(name, setup)`` pairs; each ``setup(app)`` is called last.
        job_store: Where job records live; by default as ``config`` says.
        server_pid: The pid of the whole server (the gunicorn master with several
            HTTP workers); by default this process.
        upload_dir: Directory in which uploaded files are saved; by default the
            system's temporary directory.
        metrics_dir: The directory of prometheus-client's multiprocess mode
            that the HTTP workers of one server share; ``None`` for one process.
    """
    store = job_store or _job_store(config)
    metrics = (
        Metrics(list(models), store, multiprocess_dir=metrics_dir)
        if config.metrics_endpoint
        else None
    )
    observer = Observer(
        config,
        models,
        metrics,
        answer_error=answer_error,
        unmatched=web.normalize_path_middleware(),
    )
    app = web.Application(
        # The observer first: it sees the final answer of every request.
        middlewares=[observer.middleware],
        # aiohttp reads 0 as "nothing allowed"; ours (as 2.x) means "no limit".
        client_max_size=config.client_max_size or sys.maxsize,
    )
    app[CONFIG] = config
    app[OBSERVER] = observer
    app[HEALTH] = Health()
    if metrics is not None:
        app[METRICS] = metrics
    app[MODELS] = dict(models)
    app[ARGSPECS] = {name: ModelArgs(model) for name, model in models.items()}
    app[BODY] = BodyOptions.from_config(config, upload_dir=upload_dir)
    app[PREDICTORS] = {
        name: Predictor(
            model,
            workers=config.workers,
            executor=config.executor,
            max_queue=config.max_queue,
            timeout=config.predict_timeout,
            gpus=config.gpus,
            warm=config.warm,
            inline_threshold=config.inline_threshold_us / 1e6,
            max_batch_size=config.max_batch_size,
            max_batch_delay=config.max_batch_delay_ms / 1000,
            telemetry=metrics or NO_TELEMETRY,
        )
        for name, model in models.items()
    }
    app[JOBS] = JobManager(
        store,
        max_running=config.max_train_processes,
        warm=config.warm,
        log_dir=None if config.state_dir is None else _log_dir(config.state_dir),
        server_pid=server_pid,
        gpus=config.train_gpus,
        telemetry=metrics or NO_TELEMETRY,
    )
    app.cleanup_ctx.append(_lifetime)
    app.on_shutdown.append(_stopping)
    if config.http_workers > 1:
        app.on_response_prepare.append(_worker_header)

    base = config.base_path
    add_v2_routes(app, config, f"{base}/v2")
    app.router.add_get(f"{base}/", versions.root, name="versions", allow_head=False)
    docs.setup_docs(
        app, title=TITLE, version=deepaas.__version__, description=DESCRIPTION
    )
    setup_operations(app)
    for name, setup in plugins:
        _LOG.info("Loading plugin %r", name)
        setup(app)
    # Last: the token check sees every route, plugins' included.
    security.install(app, config)
    return app


WORKER_HEADER = "X-Deepaas-Worker"


async def _worker_header(request: web.Request, response: web.StreamResponse) -> None:
    """Name the process that answered, in ``X-Deepaas-Worker`` (its pid)."""
    response.headers[WORKER_HEADER] = str(os.getpid())


def _log_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "jobs")


def _job_store(config: Config) -> JobStore:
    if config.job_store == "memory" or config.state_dir is None:
        return MemoryJobStore()
    return SQLiteJobStore(os.path.join(config.state_dir, "jobs.sqlite3"))


async def _stopping(app: web.Application) -> None:
    # Called as the server starts draining, before requests in progress end.
    app[HEALTH].stopping = True


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    predictors = app[PREDICTORS]
    for name, predictor in predictors.items():
        if app[CONFIG].warm:
            _LOG.info("Warming model %r", name)
            await predictor.warm()
        else:
            await predictor.start()
    app[JOBS].interrupt_leftovers()
    app[JOBS].open()
    app[HEALTH].starting = False
    _LOG.info("Serving models: %s", ", ".join(predictors) or "none")
    try:
        yield
    finally:
        app[HEALTH].stopping = True
        await app[JOBS].aclose(finish=app[CONFIG].shutdown_trainings == "finish")
        for predictor in predictors.values():
            await predictor.aclose()
