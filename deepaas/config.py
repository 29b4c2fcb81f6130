"""The typed configuration every layer below ``deepaas.cmd`` receives.

``deepaas.cmd.opts`` parses oslo.config options into a :class:`Config` once; nothing
else reads the command line, configuration files or the environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from deepaas.exceptions import ConfigurationError

__all__ = ["EXECUTORS", "JOB_STORES", "LOG_FORMATS", "Config"]

JOB_STORES = ("sqlite", "memory")
EXECUTORS = ("async", "thread", "process")
LOG_FORMATS = ("plain", "json")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Settings of one deepaas server (defaults are those of DEEPaaS 2.x).

    Attributes:
        listen_ip: Address to bind.
        listen_port: Port to bind.
        base_path: Prefix of every route, e.g. ``/deepaas`` behind a proxy.
        model_names: Models to serve; empty means every installed model.
        workers: Concurrent predictions per model: threads, or worker processes
            with the ``process`` executor.
        executor: Where each model's ``predict`` runs: ``"thread"`` (a pool of
            ``workers`` threads; coroutines on the event loop), ``"async"`` (the
            same, declared for coroutine models) or ``"process"`` (``workers``
            spawned processes, each holding its own warmed copy of the model).
        max_queue: Predictions that may wait for a free worker, per model; more
            are refused with :class:`~deepaas.exceptions.Overloaded`. 0 means
            no limit.
        predict_timeout: Seconds a prediction may take, waiting included; 0
            means no limit.
        gpus: GPU ids handed round-robin to worker processes as
            ``CUDA_VISIBLE_DEVICES`` (``process`` executor only).
        http_workers: Server processes answering HTTP requests; above 1,
            ``deepaas-run`` serves with gunicorn and the processes share the job
            store in ``state_dir``.
        warm: Call each model's ``warm()`` at start-up.
        debug: Verbose logging.
        debug_endpoint: Serve captured output at ``/v2/debug/``.
        doc_endpoint: Serve the Swagger UI at ``/api``.
        train_endpoint: Serve the training routes.
        predict_endpoint: Serve the predict routes.
        client_max_size: Largest request body in bytes; 0 means unlimited.
        max_train_processes: Trainings running at once; more wait.
        plugins: Server plugins to load, by name; ``None`` loads every installed one.
        log_level: Logging level name.
        log_file: Log to this file instead of standard error.
        log_format: ``"plain"`` (text lines) or ``"json"`` (one JSON object a
            line), for every log line, access lines included.
        access_log: Log one line per HTTP request.
        access_log_probes: Log requests to ``/healthz``, ``/readyz`` and
            ``/metrics`` too.
        metrics_endpoint: Record Prometheus metrics and serve them at
            ``/metrics``.
        state_dir: Directory for what outlives the server: the job database and
            training logs. ``None`` keeps nothing on disk (jobs in memory);
            ``deepaas-run`` always sets it.
        job_store: Where job records live: ``"sqlite"`` (a database in
            ``state_dir``) or ``"memory"`` (lost when the server stops).
    """

    listen_ip: str = "127.0.0.1"
    listen_port: int = 5000
    base_path: str = ""
    model_names: tuple[str, ...] = ()
    workers: int = 1
    http_workers: int = 1
    executor: str = "thread"
    max_queue: int = 64
    predict_timeout: float = 0.0
    gpus: tuple[str, ...] = ()
    warm: bool = True
    debug: bool = False
    debug_endpoint: bool = False
    doc_endpoint: bool = True
    train_endpoint: bool = True
    predict_endpoint: bool = True
    client_max_size: int = 0
    max_train_processes: int = 1
    plugins: tuple[str, ...] | None = None
    log_level: str = "INFO"
    log_file: str | None = None
    log_format: str = "plain"
    access_log: bool = True
    access_log_probes: bool = False
    metrics_endpoint: bool = True
    state_dir: str | None = None
    job_store: str = "sqlite"

    def __post_init__(self) -> None:
        base = self.base_path.rstrip("/")
        if base and not base.startswith("/"):
            raise ConfigurationError(
                f"base_path must start with '/', got {self.base_path!r}"
            )
        if "//" in base:
            raise ConfigurationError(f"base_path has an empty segment: {base!r}")
        object.__setattr__(self, "base_path", base)
        if self.workers < 1:
            raise ConfigurationError(f"workers must be at least 1, got {self.workers}")
        if self.http_workers < 1:
            raise ConfigurationError(
                f"http_workers must be at least 1, got {self.http_workers}"
            )
        if self.executor not in EXECUTORS:
            raise ConfigurationError(
                f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}"
            )
        if self.max_queue < 0:
            raise ConfigurationError(
                f"max_queue must be 0 or more, got {self.max_queue}"
            )
        if self.predict_timeout < 0:
            raise ConfigurationError(
                f"predict_timeout must be 0 or more, got {self.predict_timeout}"
            )
        object.__setattr__(self, "gpus", _unique(self.gpus))
        if self.gpus and self.executor != "process":
            raise ConfigurationError("gpus needs the 'process' executor")
        if self.max_train_processes < 1:
            raise ConfigurationError(
                "max_train_processes must be at least 1, "
                f"got {self.max_train_processes}"
            )
        if self.client_max_size < 0:
            raise ConfigurationError(
                f"client_max_size must be 0 or more, got {self.client_max_size}"
            )
        if not 0 < self.listen_port < 65536:
            raise ConfigurationError(f"listen_port out of range: {self.listen_port}")
        if self.job_store not in JOB_STORES:
            raise ConfigurationError(
                f"job_store must be one of {', '.join(JOB_STORES)}, "
                f"got {self.job_store!r}"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigurationError(
                f"log_format must be one of {', '.join(LOG_FORMATS)}, "
                f"got {self.log_format!r}"
            )
        object.__setattr__(self, "model_names", _unique(self.model_names))

    def replace(self, **changes: object) -> Config:
        """Return a copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for name in names:
        name = name.strip()
        if name:
            seen.setdefault(name, None)
    return tuple(seen)
