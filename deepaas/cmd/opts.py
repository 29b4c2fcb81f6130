"""oslo.config options of deepaas, and their translation into a :class:`Config`.

Option names and defaults are those of DEEPaaS 2.x. ``list_opts`` is the
``oslo.config.opts`` entry point used by ``oslo-config-generator`` and the docs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from oslo_config import cfg

import deepaas
from deepaas.config import EXECUTORS, JOB_STORES, LOG_FORMATS, Config

__all__ = ["list_opts", "load_config", "register_opts", "to_config"]

MODEL_ENV = "DEEPAAS_V2_MODEL"

server_opts = [
    cfg.StrOpt(
        "listen-ip",
        default="127.0.0.1",
        help="IP address on which the DEEPaaS API listens.",
    ),
    cfg.PortOpt(
        "listen-port",
        default=5000,
        help="Port on which the DEEPaaS API listens.",
    ),
    cfg.StrOpt(
        "base-path",
        default="",
        help=(
            "Base path for every route, the API document and the UI, for a server "
            "behind a reverse proxy that is not at the root of the domain, e.g. "
            "'/deepaas'. Must start with '/'."
        ),
    ),
    cfg.IntOpt(
        "http-workers",
        default=1,
        min=1,
        help=(
            "Server processes answering HTTP requests on the listen address. 1 "
            "serves from a single process; more start that many gunicorn workers "
            "(aiohttp worker class), each loading the models, that share the job "
            "database in the state directory."
        ),
    ),
]

common_opts = [
    cfg.MultiStrOpt(
        "model-name",
        default=[],
        help=(
            "Model to serve, by its entry-point name in the 'deepaas.v2.model' "
            "namespace. Repeat the option (or separate names with commas) to serve "
            "several. If not given, the DEEPAAS_V2_MODEL environment variable is "
            "used, and without it every installed model is served."
        ),
    ),
    cfg.IntOpt(
        "workers",
        short="p",
        default=1,
        min=1,
        help=(
            "Predictions run at once for each model: threads, or worker processes "
            "with '--executor process'."
        ),
    ),
    cfg.StrOpt(
        "executor",
        default="thread",
        choices=list(EXECUTORS),
        help=(
            "Where predictions run. 'thread': a pool of --workers threads in the "
            "server process (coroutine predicts run on the event loop). 'async': "
            "the same, for models whose predict is a coroutine. 'process': "
            "--workers spawned processes, each loading and warming its own copy "
            "of the model once; a crash fails only its own call, and a timed-out "
            "or cancelled call really stops."
        ),
    ),
    cfg.IntOpt(
        "max-queue",
        default=64,
        min=0,
        help=(
            "Predictions that may wait for a free worker, per model; further ones "
            "are answered with 503 and a Retry-After header. 0 means no limit."
        ),
    ),
    cfg.FloatOpt(
        "predict-timeout",
        default=0.0,
        min=0.0,
        help=(
            "Seconds a prediction may take, waiting for a worker included, before "
            "it is answered with 504; with '--executor process' its worker is "
            "killed and replaced. 0 means no limit."
        ),
    ),
    cfg.ListOpt(
        "gpus",
        default=[],
        help=(
            "GPU ids, e.g. '0,1', given round-robin to worker processes as "
            "CUDA_VISIBLE_DEVICES (set in each worker only). Only with "
            "'--executor process'."
        ),
    ),
    cfg.BoolOpt(
        "warm",
        default=True,
        help="Call each model's warm() at start-up, before serving.",
    ),
    cfg.BoolOpt("debug", short="d", default=False, help="Log at DEBUG level."),
    cfg.StrOpt(
        "log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="Logging level (DEBUG when --debug is set).",
    ),
    cfg.StrOpt(
        "log-file",
        help="Write logs to this file instead of standard error.",
    ),
    cfg.StrOpt(
        "log-format",
        default="plain",
        choices=list(LOG_FORMATS),
        help=(
            "Format of the log lines, access lines included: 'plain' text, or "
            "'json' (one JSON object a line, for log collectors)."
        ),
    ),
]

api_opts = [
    cfg.BoolOpt(
        "debug-endpoint",
        default=False,
        help=(
            "Serve what the server writes to standard output and error, and its "
            "logs, at /v2/debug/."
        ),
    ),
    cfg.BoolOpt(
        "doc-endpoint",
        default=True,
        help="Serve the Swagger UI at /api.",
    ),
    cfg.BoolOpt("train-endpoint", default=True, help="Serve the training routes."),
    cfg.BoolOpt("predict-endpoint", default=True, help="Serve the predict routes."),
    cfg.IntOpt(
        "client-max-size",
        default=0,
        min=0,
        help=(
            "Largest request body accepted, in bytes; larger ones are answered "
            "with 413. 0 means no limit (as in DEEPaaS 2.x); uploads are streamed "
            "to disk, never held in memory."
        ),
    ),
    cfg.IntOpt(
        "max-train-processes",
        default=1,
        min=1,
        help="Trainings that run at once; further ones wait as 'queued'.",
    ),
    cfg.StrOpt(
        "state-dir",
        help=(
            "Directory for the job database and training logs, kept across "
            "restarts. Default: $XDG_STATE_HOME/deepaas, or "
            "~/.local/state/deepaas when XDG_STATE_HOME is unset."
        ),
    ),
    cfg.StrOpt(
        "job-store",
        default="sqlite",
        choices=list(JOB_STORES),
        help=(
            "Where training records are kept: 'sqlite' (a database in the state "
            "directory, kept across restarts) or 'memory' (lost at exit)."
        ),
    ),
    cfg.BoolOpt(
        "access-log",
        default=True,
        help=(
            "Log one line per HTTP request, with its request id (the "
            "X-Request-ID header, or one generated)."
        ),
    ),
    cfg.BoolOpt(
        "access-log-probes",
        default=False,
        help="Log requests to /healthz, /readyz and /metrics too.",
    ),
    cfg.BoolOpt(
        "metrics-endpoint",
        default=True,
        help="Record Prometheus metrics and serve them at /metrics.",
    ),
    cfg.ListOpt(
        "plugins",
        help=(
            "Server plugins (entry points in the 'deepaas.plugins' namespace) to "
            "load. Unset loads every installed plugin; an empty value loads none."
        ),
    ),
]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Options for ``oslo-config-generator`` and the documentation."""
    return [("DEFAULT", [*server_opts, *common_opts, *api_opts])]


def register_opts(conf: cfg.ConfigOpts, *, server: bool = True) -> None:
    """Register the options on ``conf`` (a fresh ``ConfigOpts``, never a global)."""
    opts = [*common_opts, *api_opts]
    if server:
        opts = [*server_opts, *opts]
    conf.register_cli_opts(opts)


def load_config(
    argv: Sequence[str],
    *,
    environ: Mapping[str, str] | None = None,
    default_config_files: Sequence[str] | None = None,
    prog: str = "deepaas-run",
) -> Config:
    """Parse ``argv`` (and any ``--config-file``) into a :class:`Config`."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(
        list(argv),
        project="deepaas",
        prog=prog,
        version=deepaas.__version__,
        default_config_files=list(default_config_files or []),
    )
    return to_config(conf, os.environ if environ is None else environ)


def model_names(conf: cfg.ConfigOpts, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The models chosen with ``--model-name`` or, failing that, the environment."""
    raw: list[str] = list(conf.model_name or [])
    if not raw and environ.get(MODEL_ENV):
        raw = [environ[MODEL_ENV]]
    return tuple(n.strip() for item in raw for n in item.split(",") if n.strip())


def default_state_dir(environ: Mapping[str, str]) -> str:
    """``$XDG_STATE_HOME/deepaas``, or ``~/.local/state/deepaas`` without it."""
    base = environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "deepaas")


def to_config(conf: cfg.ConfigOpts, environ: Mapping[str, str]) -> Config:
    """Translate parsed options into the typed :class:`Config`."""
    plugins = conf.plugins
    return Config(
        listen_ip=conf.listen_ip,
        listen_port=conf.listen_port,
        base_path=conf.base_path or "",
        model_names=model_names(conf, environ),
        workers=conf.workers,
        http_workers=conf.http_workers,
        executor=conf.executor,
        max_queue=conf.max_queue,
        predict_timeout=conf.predict_timeout,
        gpus=tuple(conf.gpus or ()),
        warm=conf.warm,
        debug=conf.debug,
        debug_endpoint=conf.debug_endpoint,
        doc_endpoint=conf.doc_endpoint,
        train_endpoint=conf.train_endpoint,
        predict_endpoint=conf.predict_endpoint,
        client_max_size=conf.client_max_size,
        max_train_processes=conf.max_train_processes,
        plugins=None if plugins is None else tuple(p for p in plugins if p),
        log_level="DEBUG" if conf.debug else conf.log_level,
        log_file=conf.log_file,
        log_format=conf.log_format,
        access_log=conf.access_log,
        access_log_probes=conf.access_log_probes,
        metrics_endpoint=conf.metrics_endpoint,
        state_dir=conf.state_dir or default_state_dir(environ),
        job_store=conf.job_store,
    )
