"""Serving with several HTTP worker processes: gunicorn with aiohttp's worker.

``deepaas-run --http-workers N`` (N above 1) runs :class:`DeepaasApplication`: the
gunicorn master forks N workers of the ``aiohttp.GunicornWebWorker`` class, and
each builds its own application with :func:`deepaas.cmd.bootstrap.build_app` from
the :class:`~deepaas.config.Config` parsed once by the master.

With the metrics endpoint, the master creates an empty directory for the run in
which every worker keeps its metrics (prometheus-client's multiprocess mode,
through ``PROMETHEUS_MULTIPROC_DIR``), tells prometheus-client of each worker that
exits, and removes the directory when it stops.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

from aiohttp import web
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from prometheus_client import multiprocess

from deepaas.cmd.bootstrap import build_app
from deepaas.config import Config
from deepaas.exceptions import DeepaasError

__all__ = ["MULTIPROC_ENV", "DeepaasApplication", "bind_address", "serve"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

WORKER_CLASS = "aiohttp.GunicornWebWorker"
# Exit status of a gunicorn worker that could not boot; the master then stops.
_WORKER_BOOT_ERROR = 3


def bind_address(host: str, port: int) -> str:
    """``host:port`` as gunicorn reads it (IPv6 addresses in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class DeepaasApplication(BaseApplication):  # type: ignore[misc]
    """A gunicorn application serving deepaas from ``config.http_workers`` workers.

    Args:
        config: The parsed settings, handed unchanged to every worker.
        server_pid: The master's pid, recorded as the owner of trainings; by
            default the process that creates this object (the future master).
        metrics_dir: The workers' shared metrics directory, already in the
            environment as ``PROMETHEUS_MULTIPROC_DIR``; ``None`` without metrics.
    """

    def __init__(
        self,
        config: Config,
        *,
        server_pid: int | None = None,
        metrics_dir: str | None = None,
    ) -> None:
        self.config = config
        self.server_pid = os.getpid() if server_pid is None else server_pid
        self.metrics_dir = metrics_dir
        super().__init__()

    def load_config(self) -> None:
        """Set gunicorn's settings from the deepaas ones (no command line read)."""
        config = self.config
        settings: dict[str, Any] = {
            "bind": [bind_address(config.listen_ip, config.listen_port)],
            "workers": config.http_workers,
            "worker_class": WORKER_CLASS,
            # Workers answer gunicorn's heartbeat from their event loop, which
            # loading and warming the models may hold for long: no timeout.
            "timeout": 0,
            "graceful_timeout": 30,
            "loglevel": config.log_level.lower(),
            "proc_name": "deepaas-run",
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn 25 and later open a control socket in $HOME; not ours.
            settings["control_socket_disable"] = True
        if config.log_file:
            settings["errorlog"] = config.log_file
        if self.metrics_dir is not None:
            settings["child_exit"] = self.child_exit
        for key, value in settings.items():
            self.cfg.set(key, value)

    def child_exit(self, server: Any, worker: Any) -> None:
        """Drop the gauges of a worker that exited (a gunicorn hook, in the master)."""
        multiprocess.mark_process_dead(worker.pid, self.metrics_dir)  # type: ignore[no-untyped-call]

    def load(self) -> web.Application:
        """Build this worker's application (called in each worker, after the fork)."""
        try:
            return build_app(
                self.config, server_pid=self.server_pid, metrics_dir=self.metrics_dir
            )
        except DeepaasError as exc:
            print(f"deepaas-run: {exc.message}", file=sys.stderr, flush=True)
            # The status that makes the master stop rather than start another
            # worker; os._exit, as the worker class turns SystemExit into 1.
            os._exit(_WORKER_BOOT_ERROR)


def serve(config: Config) -> int:
    """Run gunicorn until it is stopped; return the exit code."""
    master = os.getpid()
    metrics_dir = None
    if config.metrics_endpoint:
        # Fresh for each run: values left by another run would be added in.
        metrics_dir = tempfile.mkdtemp(prefix="deepaas-metrics-")
        # Before the workers are forked, so that they inherit it.
        os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        DeepaasApplication(config, metrics_dir=metrics_dir).run()
    except SystemExit as exc:
        # gunicorn halts with 3 (or 4) when workers cannot boot: our exit 1.
        return 0 if exc.code in (None, 0) else 1
    finally:
        # A worker's exit comes through here too: only the master cleans up.
        if metrics_dir is not None and os.getpid() == master:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
