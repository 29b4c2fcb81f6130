"""The typed configuration every layer below ``deepaas.cmd`` receives.

``deepaas.cmd.opts`` parses oslo.config options into a :class:`Config` once; nothing
else reads the command line, configuration files or the environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from deepaas.exceptions import ConfigurationError

__all__ = ["EXECUTORS", "JOB_STORES", "SHUTDOWN_TRAININGS", "Config"]

JOB_STORES = ("sqlite", "memory")
EXECUTORS = ("async", "thread", "process")
SHUTDOWN_TRAININGS = ("interrupt", "finish")
# 1 GiB: uploads are streamed to disk, so this bounds disk use per request, not
# memory; large enough for the images, audio and archives models take.
DEFAULT_CLIENT_MAX_SIZE = 1024**3


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Settings of one deepaas server.

    Defaults are those of DEEPaaS 2.x where it had the setting, except
    ``client_max_size`` (unlimited in 2.x).

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
        max_file_size: Largest uploaded file in bytes, each; 0 means only
            ``client_max_size`` applies.
        max_form_fields: Most query parameters and form fields (multipart parts
            or urlencoded pairs) in one request; 0 means no limit.
        max_header_size: Longest request line or header line, in bytes.
        max_headers: Most header lines in one request.
        header_timeout: Seconds a connection may go without sending a complete
            request head (request line and headers): counted from when it
            opened, or from the end of its previous answer.
        body_timeout: Seconds a request body may go without sending more data
            while it is read; 0 means no limit.
        shutdown_grace: Seconds requests in progress get to finish once the
            server is asked to stop.
        shutdown_trainings: What a stopping server does with running
            trainings: ``"interrupt"`` them, or let them ``"finish"``.
        max_train_processes: Trainings running at once; more wait.
        plugins: Server plugins to load, by name; ``None`` loads every installed one.
        log_level: Logging level name.
        log_file: Log to this file instead of standard error.
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
    client_max_size: int = DEFAULT_CLIENT_MAX_SIZE
    max_file_size: int = 0
    max_form_fields: int = 1000
    max_header_size: int = 8190
    max_headers: int = 128
    header_timeout: float = 30.0
    body_timeout: float = 60.0
    shutdown_grace: float = 20.0
    shutdown_trainings: str = "interrupt"
    max_train_processes: int = 1
    plugins: tuple[str, ...] | None = None
    log_level: str = "INFO"
    log_file: str | None = None
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
        for name in ("max_file_size", "max_form_fields", "body_timeout"):
            if getattr(self, name) < 0:
                raise ConfigurationError(
                    f"{name} must be 0 or more, got {getattr(self, name)}"
                )
        for name in ("max_header_size", "max_headers", "header_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(
                    f"{name} must be more than 0, got {getattr(self, name)}"
                )
        if self.shutdown_grace < 0:
            raise ConfigurationError(
                f"shutdown_grace must be 0 or more, got {self.shutdown_grace}"
            )
        if self.shutdown_trainings not in SHUTDOWN_TRAININGS:
            raise ConfigurationError(
                "shutdown_trainings must be one of "
                f"{', '.join(SHUTDOWN_TRAININGS)}, got {self.shutdown_trainings!r}"
            )
        if not 0 < self.listen_port < 65536:
            raise ConfigurationError(f"listen_port out of range: {self.listen_port}")
        if self.job_store not in JOB_STORES:
            raise ConfigurationError(
                f"job_store must be one of {', '.join(JOB_STORES)}, "
                f"got {self.job_store!r}"
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
