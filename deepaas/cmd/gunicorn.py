"""Serving with several HTTP worker processes: gunicorn with aiohttp's worker.

``deepaas-run --http-workers N`` (N above 1) runs :class:`DeepaasApplication`: the
gunicorn master forks N workers of the ``aiohttp.GunicornWebWorker`` class, and
each builds its own application with :func:`deepaas.cmd.bootstrap.build_app` from
the :class:`~deepaas.config.Config` parsed once by the master, and serves it with
the runner of :func:`deepaas.cmd.serving.make_runner`: the same limits and grace
period as a single process.

Stopping follows :mod:`deepaas.cmd.serving` too: the first SIGTERM or SIGINT to
the master stops the workers gracefully (gunicorn's graceful timeout leaves them
the grace period, plus the time to interrupt trainings, or no limit when
trainings are let finish); a second one kills them and exits at once.

With the metrics endpoint, the master creates an empty directory for the run in
which every worker keeps its metrics (prometheus-client's multiprocess mode,
through ``PROMETHEUS_MULTIPROC_DIR``), tells prometheus-client of each worker that
exits, and removes the directory when it stops.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from aiohttp import web
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from prometheus_client import multiprocess

from deepaas.cmd import serving
from deepaas.cmd._loops import loop_name
from deepaas.cmd.bootstrap import build_app
from deepaas.config import Config
from deepaas.exceptions import DeepaasError

__all__ = [
    "MULTIPROC_ENV",
    "DeepaasApplication",
    "bind_address",
    "graceful_timeout",
    "serve",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

WORKER_CLASS = "aiohttp.GunicornWebWorker"
UVLOOP_WORKER_CLASS = "aiohttp.GunicornUVLoopWebWorker"
# Exit status of a gunicorn worker that could not boot; the master then stops.
_WORKER_BOOT_ERROR = 3
# Beyond the grace period, what a worker may take to interrupt its trainings and
# stop its executors before the master kills it.
_CLEANUP_MARGIN_S = 15
# gunicorn's graceful timeout when trainings are let finish: no limit in practice.
_NO_LIMIT_S = 10**9


def graceful_timeout(config: Config) -> int:
    """The ``graceful_timeout`` of gunicorn: how long the master waits for workers."""
    if config.shutdown_trainings == "finish":
        return _NO_LIMIT_S
    return math.ceil(config.shutdown_grace) + _CLEANUP_MARGIN_S


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
        upload_dir: Where the workers keep uploads.
        metrics_dir: The workers' shared metrics directory, already in the
            environment as ``PROMETHEUS_MULTIPROC_DIR``; ``None`` without metrics.
    """

    def __init__(
        self,
        config: Config,
        *,
        server_pid: int | None = None,
        upload_dir: str | None = None,
        metrics_dir: str | None = None,
    ) -> None:
        self.config = config
        self.server_pid = os.getpid() if server_pid is None else server_pid
        self.upload_dir = upload_dir
        self.metrics_dir = metrics_dir
        super().__init__()

    def load_config(self) -> None:
        """Set gunicorn's settings from the deepaas ones (no command line read)."""
        config = self.config
        settings: dict[str, Any] = {
            "bind": [bind_address(config.listen_ip, config.listen_port)],
            "workers": config.http_workers,
            "worker_class": (
                UVLOOP_WORKER_CLASS
                if loop_name(config.event_loop) == "uvloop"
                else WORKER_CLASS
            ),
            # Workers answer gunicorn's heartbeat from their event loop, which
            # loading and warming the models may hold for long: no timeout.
            "timeout": 0,
            "graceful_timeout": graceful_timeout(config),
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

    def load(self) -> Callable[[], Awaitable[web.AppRunner]]:
        """Build this worker's application (called in each worker, after the fork).

        Returns:
            What the aiohttp worker class calls for the runner to serve with.
        """
        try:
            app = build_app(
                self.config,
                server_pid=self.server_pid,
                upload_dir=self.upload_dir,
                metrics_dir=self.metrics_dir,
            )
        except DeepaasError as exc:
            print(f"deepaas-run: {exc.message}", file=sys.stderr, flush=True)
            # The status that makes the master stop rather than start another
            # worker; os._exit, as the worker class turns SystemExit into 1.
            os._exit(_WORKER_BOOT_ERROR)
        config = self.config

        async def runner() -> web.AppRunner:
            # The application logs its own access lines (deepaas.api.observe).
            return serving.make_runner(app, config, access_log=None)

        return runner

    def run(self) -> None:
        """Run the gunicorn master (with the stop signals of deepaas-run)."""
        try:
            _Arbiter(self, on_forced_exit=self._forced_exit).run()
        except RuntimeError as exc:
            print(f"\nError: {exc}\n", file=sys.stderr, flush=True)
            sys.exit(1)

    def _forced_exit(self) -> None:
        serving.remove_scratch_dir(self.upload_dir)
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


class _Arbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's master, stopping as ``deepaas-run`` does on its own.

    SIGINT stops as gracefully as SIGTERM (gunicorn's own SIGINT is a quick
    stop, which the aiohttp workers take as a graceful one anyway); a second
    SIGTERM or SIGINT kills the workers and exits at once.
    """

    def __init__(
        self, app: DeepaasApplication, *, on_forced_exit: Callable[[], None]
    ) -> None:
        super().__init__(app)
        self._stop_signals = 0
        self._on_forced_exit = on_forced_exit

    def signal(self, sig: int, frame: FrameType | None) -> None:
        """Queue a signal for the main loop (gunicorn's handler), or exit now."""
        if sig in serving.STOP_SIGNALS:
            self._stop_signals += 1
            if self._stop_signals > 1:
                self._exit_now(sig)
            sig = signal.SIGTERM
        super().signal(sig, frame)

    def _exit_now(self, sig: int) -> None:
        serving.say_forced_exit(sig)
        workers = list(self.WORKERS)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._on_forced_exit()
        os._exit(serving.forced_exit_status(sig))


def serve(config: Config) -> int:
    """Run gunicorn until it is stopped; return the exit code."""
    # The workers' uploads go in here, removed at exit, even a forced one.
    scratch_dir = serving.make_scratch_dir()
    master = os.getpid()
    metrics_dir = None
    if config.metrics_endpoint:
        # Fresh for each run: values left by another run would be added in.
        metrics_dir = tempfile.mkdtemp(prefix="deepaas-metrics-")
        # Before the workers are forked, so that they inherit it.
        os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        DeepaasApplication(
            config, upload_dir=scratch_dir, metrics_dir=metrics_dir
        ).run()
    except SystemExit as exc:
        # gunicorn halts with 3 (or 4) when workers cannot boot: our exit 1.
        return 0 if exc.code in (None, 0) else 1
    finally:
        # A worker's exit comes through here too: only the master cleans up.
        if os.getpid() == master:
            serving.remove_scratch_dir(scratch_dir)
            if metrics_dir is not None:
                os.environ.pop(MULTIPROC_ENV, None)
                shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
