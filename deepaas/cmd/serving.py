"""Serving one application: connection limits, stop signals and a graceful stop.

``deepaas-run`` (one process) serves with :func:`serve`; the gunicorn workers of
``--http-workers`` build their runner with :func:`make_runner`, so that both
apply the same limits and the same grace period.

The first SIGTERM or SIGINT stops gracefully: the listening socket is closed at
once, requests in progress get ``shutdown_grace`` seconds to finish, then the
application's cleanup interrupts (or waits for) trainings and stops the
executors. A second one exits at once with status ``128 + signal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from aiohttp import web

from deepaas.cmd._loops import new_event_loop
from deepaas.config import Config

__all__ = [
    "STOP_SIGNALS",
    "forced_exit_status",
    "handler_options",
    "make_runner",
    "make_scratch_dir",
    "remove_scratch_dir",
    "say_forced_exit",
    "serve",
]

_LOG = logging.getLogger("deepaas")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_SCRATCH_PREFIX = "deepaas-run-"


def handler_options(config: Config) -> dict[str, Any]:
    """Keyword arguments of aiohttp's connection handler that apply the limits.

    aiohttp closes a connection that has not sent a complete request head
    within ``keepalive_timeout`` of opening, or of the end of its previous
    answer: that is the header timeout, which also ends idle keep-alive
    connections.
    """
    return {
        "keepalive_timeout": config.header_timeout,
        "max_line_size": config.max_header_size,
        "max_field_size": config.max_header_size,
        "max_headers": config.max_headers,
    }


def make_runner(app: web.Application, config: Config, **kwargs: Any) -> web.AppRunner:
    """An ``AppRunner`` with the limits and grace period of ``config``.

    Args:
        app: The application to serve.
        config: Server settings.
        **kwargs: More ``AppRunner`` arguments (e.g. ``access_log``).
    """
    app.on_startup.append(_freeze_startup_objects)
    return web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=config.shutdown_grace,
        **handler_options(config),
        **kwargs,
    )


async def _freeze_startup_objects(app: web.Application) -> None:
    # Run after the models are loaded and warmed. What exists now (modules,
    # models, the application) lives until exit: moved out of the collector's
    # generations, it is not walked again by every full collection, which at
    # thousands of requests a second is time taken from each of them.
    gc.collect()
    gc.freeze()


def make_scratch_dir() -> str:
    """A private temporary directory for the uploads of one server."""
    return tempfile.mkdtemp(prefix=_SCRATCH_PREFIX)


def remove_scratch_dir(path: str | None) -> None:
    """Remove a directory made by :func:`make_scratch_dir`, whatever it holds."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def say_forced_exit(signum: int) -> None:
    """Tell standard error that a second stop signal ends the server now.

    Written straight to the file descriptor: this runs in a signal handler,
    where logging could wait for a lock the interrupted code holds.
    """
    os.write(2, f"deepaas-run: {_name(signum)} again, exiting now\n".encode())


def forced_exit_status(signum: int) -> int:
    """The exit status after a second stop signal: that of a death by it."""
    return 128 + signum


class _StopSignals:
    """Turns the first stop signal into an event, and the second into an exit.

    Plain ``signal.signal`` handlers rather than the event loop's: the second
    signal must work even while the loop is busy.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        grace: float,
        on_forced_exit: Callable[[], None],
    ) -> None:
        self.stopping = asyncio.Event()
        self._loop = loop
        self._grace = grace
        self._on_forced_exit = on_forced_exit
        self._received = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._received += 1
        if self._received == 1:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._begin, signum)
            return
        say_forced_exit(signum)
        self._on_forced_exit()
        os._exit(forced_exit_status(signum))

    def _begin(self, signum: int) -> None:
        _LOG.info(
            "%s received: stopping; requests in progress get up to %s s "
            "(send it again to stop at once)",
            _name(signum),
            f"{self._grace:g}",
        )
        self.stopping.set()


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def serve(
    app: web.Application,
    config: Config,
    *,
    scratch_dir: str | None = None,
    **runner_kwargs: Any,
) -> int:
    """Serve ``app`` on the configured address until SIGTERM or SIGINT.

    Args:
        app: The application.
        config: Server settings: address, limits and grace period.
        scratch_dir: A directory removed at exit, even a forced one (where the
            application keeps uploads).
        **runner_kwargs: More ``AppRunner`` arguments (e.g. ``access_log``).

    Returns:
        The exit status: 0 after a graceful stop. Model code still running in
        threads once the application is closed (a prediction past the grace
        period) cannot be stopped: the process then exits with 0 at once,
        through ``os._exit``, rather than wait for it. A second stop signal
        exits at once too, with :func:`forced_exit_status`.
    """
    # Threads already running are not ours to judge at exit.
    others = set(threading.enumerate())
    loop = new_event_loop(config.event_loop)
    stops = _StopSignals(
        loop,
        grace=config.shutdown_grace,
        on_forced_exit=lambda: remove_scratch_dir(scratch_dir),
    )
    stops.install()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(_serve(app, config, stops.stopping, runner_kwargs))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        remove_scratch_dir(scratch_dir)
    busy = _busy_threads(others, deadline=time.monotonic() + 1.0)
    stops.uninstall()
    if busy:
        # Model code still running in threads that cannot be stopped: waiting
        # for them would make the grace period meaningless.
        _LOG.warning(
            "Exiting with %d prediction thread(s) still running: %s",
            len(busy),
            ", ".join(t.name for t in busy),
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    _LOG.info("Stopped")
    return 0


async def _serve(
    app: web.Application,
    config: Config,
    stopping: asyncio.Event,
    runner_kwargs: dict[str, Any],
) -> None:
    runner = make_runner(app, config, **runner_kwargs)
    # Starts the application: loads and warms the models (a stop signal
    # meanwhile takes effect once that is done).
    await runner.setup()
    try:
        if not stopping.is_set():
            site = web.TCPSite(runner, config.listen_ip, config.listen_port)
            await site.start()
            await stopping.wait()
    finally:
        # Closes the listening socket, lets requests in progress finish within
        # the grace period, then runs the application's cleanup.
        await runner.cleanup()


def _busy_threads(
    others: set[threading.Thread], deadline: float
) -> list[threading.Thread]:
    """Threads not in ``others`` still alive at ``deadline`` (they would block exit).

    Daemon threads do not count: they never block exit.
    """
    busy = []
    for thread in threading.enumerate():
        if thread in others or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            busy.append(thread)
    return busy
