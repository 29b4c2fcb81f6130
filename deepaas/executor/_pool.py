"""A pool of long-lived spawned processes that serve calls for their whole life."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from deepaas.exceptions import DeepaasError, WorkerCrashed
from deepaas.executor._process import (
    _TERM_GRACE_S,
    _exit_reason,
    _remote,
    _resolve,
    _stop,
    watch_parent,
)
from deepaas.telemetry import NO_TELEMETRY, Telemetry

__all__ = ["ProcessPool"]

_LOG = logging.getLogger(__name__)
# A worker whose initializer fails is started again after this long, doubling.
_RESPAWN_DELAY_S = 1.0
_RESPAWN_DELAY_MAX_S = 30.0


def _pool_worker_main(
    conn: multiprocessing.connection.Connection,
    parent: int,
    env: dict[str, str],
    initializer: Callable[..., Callable[..., Any]],
    initargs: tuple[Any, ...],
) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Ctrl-C reaches the whole process group; the server stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    watch_parent(parent)
    try:
        handler = initializer(*initargs)
    except BaseException as exc:
        _send(conn, ("error", _portable(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            args, kwargs = conn.recv()
        except EOFError:
            return
        try:
            outcome: tuple[str, Any] = ("ok", handler(*args, **kwargs))
        except BaseException as exc:
            outcome = ("error", _portable(exc))
        _send(conn, outcome)


def _send(
    conn: multiprocessing.connection.Connection, outcome: tuple[str, Any]
) -> None:
    try:
        conn.send(outcome)
    except Exception as exc:
        # Pickling fails before anything is written: the pipe is still clean.
        conn.send(("error", _remote(TypeError(f"result cannot be sent back: {exc}"))))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` itself when it is a deepaas error that pickles, else a RemoteError."""
    if isinstance(exc, DeepaasError):
        with contextlib.suppress(Exception):
            pickle.dumps(exc)
            return exc
    return _remote(exc)


class _Worker:
    """One process of a :class:`ProcessPool` and the parent's end of its pipe."""

    def __init__(
        self,
        slot: int,
        process: multiprocessing.process.BaseProcess,
        conn: multiprocessing.connection.Connection,
    ) -> None:
        self.slot = slot
        self.process = process
        self.conn = conn
        self.pid = process.pid

    async def receive(self) -> tuple[str, Any]:
        """Wait for the worker's next message; WorkerCrashed if it died first."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self.conn.fileno(), _resolve, ready)
        try:
            await ready
        finally:
            loop.remove_reader(self.conn.fileno())
        try:
            return self.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            await loop.run_in_executor(None, self.process.join, _TERM_GRACE_S)
            raise WorkerCrashed(
                f"worker process {self.process.name} (pid {self.pid}) died "
                f"({_exit_reason(self.process.exitcode)})"
            ) from None

    def stop(self) -> None:
        """End the process (SIGTERM, then SIGKILL) and close the pipe."""
        with contextlib.suppress(OSError):
            self.conn.close()
        _stop(self.process)


class ProcessPool:
    """``size`` spawned processes that each serve calls for their whole life.

    Each worker runs ``initializer(*initargs)`` once, which returns the handler
    every call is given to: state built there (a loaded model) is never pickled
    again. Calls are served first come, first served. A call whose worker dies
    fails with :class:`WorkerCrashed`; a call cancelled (or timed out) while it
    runs kills its worker. Either way a fresh worker takes the dead one's place.

    Args:
        size: Number of worker processes.
        initializer: A module-level function returning the handler.
        initargs: Arguments of ``initializer``; they must pickle.
        envs: Extra environment of each worker, by slot, cycled (e.g. one
            ``CUDA_VISIBLE_DEVICES`` per GPU); set in the worker only.
        name: Prefix of the workers' process names.
        telemetry: Told of every worker replaced, with the pool's ``name``.
    """

    def __init__(
        self,
        size: int,
        initializer: Callable[..., Callable[..., Any]],
        initargs: tuple[Any, ...] = (),
        *,
        envs: Sequence[Mapping[str, str]] = (),
        name: str = "deepaas-pool",
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self.name = name
        self._initializer = initializer
        self._initargs = initargs
        self._envs = [dict(e) for e in envs]
        self._telemetry = telemetry
        self._idle: asyncio.Queue[_Worker] | None = None
        self._workers: dict[int, _Worker] = {}
        self._starting: asyncio.Task[None] | None = None
        self._respawns: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pids(self) -> list[int | None]:
        """Process ids of the live workers, by slot."""
        return [self._workers[s].pid for s in sorted(self._workers)]

    def dead_workers(self) -> list[str]:
        """Names of the workers whose process has ended and is not yet replaced."""
        return [
            self._workers[s].process.name
            for s in sorted(self._workers)
            if not self._workers[s].process.is_alive()
        ]

    async def start(self) -> None:
        """Start every worker and wait until each has run its initializer.

        Raises:
            Exception: An initializer raised (a deepaas error as is, others as
                :class:`RemoteError`); the workers already started are stopped.
        """
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start_all())
        await asyncio.shield(self._starting)

    async def _start_all(self) -> None:
        self._idle = asyncio.Queue()
        results = await asyncio.gather(
            *(self._spawn(slot) for slot in range(self.size)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for result in results:
            if isinstance(result, _Worker):
                self._workers[result.slot] = result
                self._idle.put_nowait(result)
        if failures:
            await self.aclose()
            raise failures[0]

    async def _spawn(self, slot: int) -> _Worker:
        ctx = multiprocessing.get_context("spawn")
        mine, theirs = ctx.Pipe(duplex=True)
        env = self._envs[slot % len(self._envs)] if self._envs else {}
        process = ctx.Process(
            target=_pool_worker_main,
            args=(theirs, os.getpid(), env, self._initializer, self._initargs),
            name=f"{self.name}-{slot}",
            daemon=True,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, process.start)
        # Only the child holds its end now: its death makes ours readable.
        theirs.close()
        worker = _Worker(slot, process, mine)
        try:
            status, value = await worker.receive()
        except BaseException:
            await loop.run_in_executor(None, worker.stop)
            raise
        if status != "ready":
            await loop.run_in_executor(None, worker.stop)
            raise value
        _LOG.info("Worker %s started (pid %s)", process.name, worker.pid)
        return worker

    async def run(
        self, /, *args: Any, abandoned: Callable[[], bool] | None = None
    ) -> Any:
        """Hand ``args`` to the first free worker's handler.

        A call cancelled while it waits for a worker is never sent to one, nor is
        one for which ``abandoned()`` is true when a worker becomes free.

        Raises:
            WorkerCrashed: The worker died while running the call.
            RemoteError: The handler raised something other than a deepaas error.
        """
        await self.start()
        assert self._idle is not None
        if self._closed:
            raise WorkerCrashed(f"{self.name} is shut down")
        worker = await self._idle.get()
        if abandoned is not None and abandoned():
            self._idle.put_nowait(worker)
            raise asyncio.CancelledError("the caller went away before the call started")
        healthy = False
        reason = "crashed"
        try:
            worker.conn.send((args, {}))
            status, value = await worker.receive()
            healthy = True
        except (OSError, ValueError):
            raise WorkerCrashed(
                f"worker process {worker.process.name} (pid {worker.pid}) died "
                f"({_exit_reason(worker.process.exitcode)})"
            ) from None
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        finally:
            if healthy:
                self._idle.put_nowait(worker)
            else:
                self._replace(worker, reason)
        if status == "error":
            raise value
        return value

    def _replace(self, worker: _Worker, reason: str) -> None:
        if self._closed:
            worker.stop()
            return
        _LOG.warning(
            "Replacing worker %s (pid %s, %s)", worker.process.name, worker.pid, reason
        )
        self._telemetry.worker_restart(self.name, reason)
        task = asyncio.ensure_future(self._respawn(worker))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self, old: _Worker) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, old.stop)
        delay = _RESPAWN_DELAY_S
        while not self._closed:
            try:
                worker = await self._spawn(old.slot)
            except Exception as exc:
                _LOG.error(
                    "Worker %s-%s failed to start again, retrying in %.0f s: %s",
                    self.name,
                    old.slot,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RESPAWN_DELAY_MAX_S)
                continue
            if self._closed:
                await loop.run_in_executor(None, worker.stop)
                return
            self._workers[old.slot] = worker
            assert self._idle is not None
            self._idle.put_nowait(worker)
            return

    async def aclose(self) -> None:
        """Stop every worker; calls still waiting never run."""
        self._closed = True
        for task in list(self._respawns):
            task.cancel()
        workers = list(self._workers.values())
        self._workers.clear()
        if workers:
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(None, w.stop) for w in workers))
