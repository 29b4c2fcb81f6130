"""A call in a killable child process, and what every process executor shares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from deepaas.exceptions import WorkerCrashed

__all__ = ["RemoteError", "run_in_process", "watch_parent"]

_LOG = logging.getLogger(__name__)
# A killed child gets this long to exit on SIGTERM before SIGKILL.
_TERM_GRACE_S = 3.0
# How often a child checks that its parent still lives.
_PARENT_POLL_S = 0.5


class RemoteError(Exception):
    """An exception raised in a child process, carried back as text.

    Exceptions of model code often do not pickle; their type name, message and
    traceback always do.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(type_name, message, traceback_text)
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


def _child_main(
    conn: multiprocessing.connection.Connection,
    parent: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    # Default SIGTERM handling: a cancel must stop the child even inside C code.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Ctrl-C reaches the whole process group; the parent decides whether this
    # call is stopped (or, for a training, let finish) when it stops itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent's pid comes from the parent: it may die before we get here.
    watch_parent(parent)
    try:
        outcome: tuple[str, Any] = ("ok", fn(*args, **kwargs))
    except BaseException as exc:
        outcome = ("error", _remote(exc))
    try:
        conn.send(outcome)
    except Exception as exc:
        conn.send(("error", _remote(TypeError(f"result cannot be sent back: {exc}"))))
    finally:
        conn.close()


def watch_parent(parent: int, *, interval: float = _PARENT_POLL_S) -> None:
    """End this process as soon as ``parent`` is no longer its parent.

    A server killed with SIGKILL cannot stop its children; without this, a
    training would go on, orphaned, with nobody to read its result.

    Args:
        parent: The parent's process id, as read at start-up.
        interval: Seconds between checks.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="deepaas-parent-watch", daemon=True).start()


def _remote(exc: BaseException) -> RemoteError:
    if isinstance(exc, RemoteError):
        return exc
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return RemoteError(type(exc).__name__, str(exc), text)


async def run_in_process(
    fn: Callable[..., Any], /, *args: Any, name: str = "deepaas-worker", **kwargs: Any
) -> Any:
    """Run ``fn(*args, **kwargs)`` in a new spawned process and await the result.

    ``fn`` must be a module-level function. Cancelling the awaiting task
    terminates the process (SIGTERM, then SIGKILL), so the work really stops.

    Raises:
        RemoteError: ``fn`` raised in the child.
        WorkerCrashed: The child died without answering (signal, ``os._exit``).
    """
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child_main,
        args=(writer, os.getpid(), fn, args, kwargs),
        name=name,
        daemon=True,
    )
    loop = asyncio.get_running_loop()
    starting = loop.run_in_executor(None, process.start)
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Cancelled while the child starts (a training deleted right after it
        # was posted): the thread goes on starting it, so stop it once started.
        # A task of its own, so that a second cancel cannot interrupt that:
        # the child would run on, unwatched and outside any process limit.
        stopping = asyncio.ensure_future(
            _stop_once_started(starting, process, reader, writer)
        )
        await asyncio.shield(stopping)
        raise
    # Only the child holds the write end now: its death makes the pipe readable.
    writer.close()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(reader.fileno(), _resolve, ready)
    try:
        await ready
        try:
            status, value = reader.recv()
        except EOFError:
            await loop.run_in_executor(None, process.join, _TERM_GRACE_S)
            raise WorkerCrashed(
                f"worker process {name} died without answering "
                f"({_exit_reason(process.exitcode)})"
            ) from None
    except asyncio.CancelledError:
        await loop.run_in_executor(None, _stop, process)
        raise
    finally:
        loop.remove_reader(reader.fileno())
        reader.close()
    await loop.run_in_executor(None, process.join, _TERM_GRACE_S)
    if status == "error":
        raise value
    return value


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _stop(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.terminate()
        process.join(_TERM_GRACE_S)
    if process.is_alive():
        _LOG.warning("Process %s ignored SIGTERM; killing it", process.name)
        process.kill()
        process.join()
    with contextlib.suppress(ValueError):
        process.close()


async def _stop_once_started(
    starting: asyncio.Future[None],
    process: multiprocessing.process.BaseProcess,
    *pipe_ends: multiprocessing.connection.Connection,
) -> None:
    with contextlib.suppress(Exception):
        await starting  # a start that failed left nothing to stop
    for end in pipe_ends:
        end.close()
    await asyncio.get_running_loop().run_in_executor(None, _stop, process)


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"
