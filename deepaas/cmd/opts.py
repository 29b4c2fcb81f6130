"""oslo.config options of deepaas, and their translation into a :class:`Config`.

Option names and defaults are those of DEEPaaS 2.x. ``list_opts`` is the
``oslo.config.opts`` entry point used by ``oslo-config-generator`` and the docs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from oslo_config import cfg

import deepaas
from deepaas.config import (
    AUTH_MODES,
    DEFAULT_CLIENT_MAX_SIZE,
    EVENT_LOOPS,
    EXECUTORS,
    JOB_STORES,
    LOG_FORMATS,
    SHUTDOWN_TRAININGS,
    Config,
)

__all__ = ["list_opts", "load_config", "register_opts", "to_config"]

MODEL_ENV = "DEEPAAS_V2_MODEL"
AUTH_ENV = "DEEPAAS_AUTH"
TOKENS_ENV = "DEEPAAS_TOKENS"

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
    cfg.StrOpt(
        "event-loop",
        default="auto",
        choices=list(EVENT_LOOPS),
        help=(
            "The event loop the server runs on. 'auto': uvloop where it is "
            "installed (it is a dependency on Linux and macOS), else asyncio's "
            "own. 'uvloop' refuses to start without it; 'asyncio' never uses it."
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
        default="auto",
        choices=list(EXECUTORS),
        help=(
            "Where predictions run. 'auto': a pool of --workers threads in the "
            "server process, except for a model whose calls keep taking less than "
            "--inline-threshold-us, which is called on the event loop, where a "
            "thread hand-off would cost more than the call. 'thread': always the "
            "threads. 'async': the same, for models whose predict is a coroutine "
            "(coroutines always run on the event loop). 'process': --workers "
            "spawned processes, each loading and warming its own copy of the "
            "model once; a crash fails only its own call, and a timed-out or "
            "cancelled call really stops."
        ),
    ),
    cfg.IntOpt(
        "inline-threshold-us",
        default=200,
        min=0,
        help=(
            "With '--executor auto', the duration in microseconds under which a "
            "model's predict calls must stay for them to run on the event loop. "
            "One call over five times this, or an average over it, moves the "
            "model back to its threads. 0 keeps every model in its threads."
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
    cfg.IntOpt(
        "max-batch-size",
        default=1,
        min=1,
        help=(
            "Dynamic batching: most predictions handed at once to the "
            "predict_batch() of a model that has one; each worker runs one batch "
            "at a time. 1 turns batching off: every prediction calls predict()."
        ),
    ),
    cfg.FloatOpt(
        "max-batch-delay-ms",
        default=5.0,
        min=0.0,
        help=(
            "Milliseconds the first prediction of a batch may wait for more "
            "while other batches of the model run (it never waits on an idle "
            "model). 0 starts batches as soon as a worker is free."
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
    cfg.ListOpt(
        "train-gpus",
        default=[],
        help=(
            "GPU ids, e.g. '2,3', given round-robin to each model's training "
            "worker processes as CUDA_VISIBLE_DEVICES (set in the workers only), "
            "so that trainings and predictions may use separate devices."
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
        default=DEFAULT_CLIENT_MAX_SIZE,
        min=0,
        help=(
            "Largest request body accepted, in bytes; larger ones are answered "
            "with 413. Uploads are streamed to disk, never held in memory, so "
            "this bounds the disk a request may fill. 0 means no limit (the "
            "default of DEEPaaS 2.x)."
        ),
    ),
    cfg.IntOpt(
        "max-train-processes",
        default=1,
        min=1,
        help=(
            "Trainings that run at once; further ones wait as 'queued'. Each "
            "model gets up to this many training worker processes, started when "
            "its trainings need them and reused from one training to the next."
        ),
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

security_opts = [
    cfg.StrOpt(
        "auth",
        choices=list(AUTH_MODES),
        help=(
            "'auto': requests need a bearer token when tokens (--auth-token-file, "
            f"{TOKENS_ENV}) or an OIDC issuer (--oidc-issuer) are configured; "
            "without them the server is open, and it refuses to listen on an "
            "address that is not loopback. 'none': serve without authentication "
            "on any address, as DEEPaaS 2.x did. Default: the "
            f"{AUTH_ENV} environment variable, or 'auto'."
        ),
    ),
    cfg.StrOpt(
        "auth-token-file",
        help=(
            "File of static bearer tokens, one per line: the token (or "
            "'sha256:' and the hex digest of the token) and its scopes separated "
            "by commas, e.g. 's3cr3t-token predict,train'. Scopes: predict, "
            "train, admin (admin implies the others). Blank lines and lines "
            f"starting with '#' are ignored. Tokens in the {TOKENS_ENV} "
            "environment variable (the same format, ';' also separating entries) "
            "are accepted too."
        ),
    ),
    cfg.StrOpt(
        "oidc-issuer",
        help=(
            "Accept JSON Web Tokens issued by this OpenID Connect issuer (its "
            "exact 'iss' value); their scopes come from --oidc-scope-claim. Needs "
            "the 'oidc' extra (pip install 'deepaas[oidc]')."
        ),
    ),
    cfg.ListOpt(
        "oidc-audience",
        default=[],
        help="Audiences ('aud') accepted in tokens of --oidc-issuer; required with it.",
    ),
    cfg.StrOpt(
        "oidc-jwks-file",
        help=(
            "Local JSON Web Key Set file with the issuer's public keys: tokens "
            "are checked without network access. Read at start-up."
        ),
    ),
    cfg.StrOpt(
        "oidc-jwks-uri",
        help=(
            "URL of the issuer's JSON Web Key Set. Default: the 'jwks_uri' of "
            "the issuer's /.well-known/openid-configuration document, fetched "
            "when the first token arrives. Keys are cached and fetched again "
            "for an unknown key id."
        ),
    ),
    cfg.ListOpt(
        "oidc-scope-claim",
        default=["scope", "scp"],
        help=(
            "Claims holding a token's scopes, as a space-separated string or a "
            "list; the first one present is used."
        ),
    ),
    cfg.StrOpt(
        "oidc-scope-prefix",
        default="",
        help=(
            "Prefix of deepaas's scopes in the scope claim, e.g. 'deepaas:' to "
            "read 'deepaas:predict' as 'predict'; other scopes are ignored."
        ),
    ),
    cfg.MultiStrOpt(
        "cors-origin",
        default=[],
        help=(
            "Origin (e.g. 'https://app.example.org') whose browser pages may call "
            "the API; repeat for several, '*' for any. Unset: no CORS headers."
        ),
    ),
    cfg.BoolOpt(
        "force-debug-endpoint",
        default=False,
        help=(
            "Serve --debug-endpoint on an address that is not loopback; without "
            "it the server refuses to start so."
        ),
    ),
]


# Limits on what one client may send, and how slowly; server only.
limit_opts = [
    cfg.IntOpt(
        "max-file-size",
        default=0,
        min=0,
        help=(
            "Largest uploaded file accepted, in bytes, for each file of a "
            "multipart form; a larger one is answered with 413 naming its field. "
            "0 means only --client-max-size applies."
        ),
    ),
    cfg.IntOpt(
        "max-form-fields",
        default=1000,
        min=0,
        help=(
            "Most query parameters and form fields (multipart parts or "
            "urlencoded pairs) in one request; more are answered with 413. 0 "
            "means no limit."
        ),
    ),
    cfg.IntOpt(
        "max-header-size",
        default=8190,
        min=1,
        help=(
            "Longest request line (method, path and query string) or header "
            "line accepted, in bytes; longer ones are answered with 400."
        ),
    ),
    cfg.IntOpt(
        "max-headers",
        default=128,
        min=1,
        help="Most header lines in one request; more are answered with 400.",
    ),
    cfg.FloatOpt(
        "header-timeout",
        default=30.0,
        min=0.001,
        help=(
            "Seconds a connection may go without sending a complete request "
            "line and headers, counted from when it opened or from the end of "
            "its previous answer; then it is closed. This also closes idle "
            "keep-alive connections."
        ),
    ),
    cfg.FloatOpt(
        "body-timeout",
        default=60.0,
        min=0.0,
        help=(
            "Seconds the server waits for more of a request body it is reading "
            "before answering 408 and closing the connection; its uploads are "
            "deleted. 0 means no limit."
        ),
    ),
]

# How the server stops on SIGTERM or SIGINT; server only.
shutdown_opts = [
    cfg.FloatOpt(
        "shutdown-grace",
        default=20.0,
        min=0.0,
        help=(
            "Seconds requests in progress (predictions included) get to finish "
            "once the server is asked to stop with SIGTERM or SIGINT; it stops "
            "accepting connections at once, and cancels what is left after "
            "this time."
        ),
    ),
    cfg.StrOpt(
        "shutdown-trainings",
        default="interrupt",
        choices=list(SHUTDOWN_TRAININGS),
        help=(
            "What a stopping server does with its running trainings: "
            "'interrupt' stops them and records them as 'interrupted'; 'finish' "
            "waits, without a time limit, for them to end (queued ones are "
            "interrupted). A second SIGTERM or SIGINT stops at once either way."
        ),
    ),
]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Options for ``oslo-config-generator`` and the documentation."""
    return [
        (
            "DEFAULT",
            [
                *server_opts,
                *common_opts,
                *api_opts,
                *security_opts,
                *limit_opts,
                *shutdown_opts,
            ],
        )
    ]


def register_opts(conf: cfg.ConfigOpts, *, server: bool = True) -> None:
    """Register the options on ``conf`` (a fresh ``ConfigOpts``, never a global)."""
    opts = [*common_opts, *api_opts]
    if server:
        opts = [*server_opts, *opts, *security_opts, *limit_opts, *shutdown_opts]
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
        event_loop=conf.event_loop,
        executor=conf.executor,
        inline_threshold_us=conf.inline_threshold_us,
        max_queue=conf.max_queue,
        predict_timeout=conf.predict_timeout,
        max_batch_size=conf.max_batch_size,
        max_batch_delay_ms=conf.max_batch_delay_ms,
        gpus=tuple(conf.gpus or ()),
        train_gpus=tuple(conf.train_gpus or ()),
        warm=conf.warm,
        debug=conf.debug,
        debug_endpoint=conf.debug_endpoint,
        **_security(conf, environ),
        doc_endpoint=conf.doc_endpoint,
        train_endpoint=conf.train_endpoint,
        predict_endpoint=conf.predict_endpoint,
        client_max_size=conf.client_max_size,
        max_file_size=conf.max_file_size,
        max_form_fields=conf.max_form_fields,
        max_header_size=conf.max_header_size,
        max_headers=conf.max_headers,
        header_timeout=conf.header_timeout,
        body_timeout=conf.body_timeout,
        shutdown_grace=conf.shutdown_grace,
        shutdown_trainings=conf.shutdown_trainings,
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


def _security(conf: cfg.ConfigOpts, environ: Mapping[str, str]) -> dict[str, Any]:
    """The authentication and CORS settings; the environment fills in the gaps."""
    return {
        "force_debug_endpoint": conf.force_debug_endpoint,
        "auth": conf.auth or environ.get(AUTH_ENV, "").strip() or "auto",
        "auth_token_file": conf.auth_token_file or None,
        "auth_tokens": environ.get(TOKENS_ENV, ""),
        "oidc_issuer": conf.oidc_issuer or None,
        "oidc_audience": tuple(conf.oidc_audience or ()),
        "oidc_jwks_file": conf.oidc_jwks_file or None,
        "oidc_jwks_uri": conf.oidc_jwks_uri or None,
        "oidc_scope_claims": tuple(conf.oidc_scope_claim or ()),
        "oidc_scope_prefix": conf.oidc_scope_prefix or "",
        "cors_origins": tuple(conf.cors_origin or ()),
    }
