"""A pool of long-lived spawned processes that serve calls for their whole life."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import struct
import threading
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
# Calls and answers are plain pickles (no multiprocessing reducers: arguments
# are data), in multiprocessing.Connection's framing.
_PROTOCOL = pickle.HIGHEST_PROTOCOL
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
            args = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            outcome: tuple[str, Any] = ("ok", handler(*args))
        except BaseException as exc:
            outcome = ("error", _portable(exc))
        _send(conn, outcome)


def _send(
    conn: multiprocessing.connection.Connection, outcome: tuple[str, Any]
) -> None:
    try:
        payload = pickle.dumps(outcome, _PROTOCOL)
    except Exception as exc:
        # Pickling fails before anything is written: the pipe is still clean.
        error = _remote(TypeError(f"result cannot be sent back: {exc}"))
        payload = pickle.dumps(("error", error), _PROTOCOL)
    conn.send_bytes(payload)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` itself when it is a deepaas error that pickles, else a RemoteError."""
    if isinstance(exc, DeepaasError):
        with contextlib.suppress(Exception):
            pickle.dumps(exc)
            return exc
    return _remote(exc)


def _frame(payload: bytes) -> bytes:
    """``payload`` framed as ``multiprocessing.Connection`` frames its messages."""
    size = len(payload)
    if size > 0x7FFFFFFF:
        return struct.pack("!iQ", -1, size) + payload
    return struct.pack("!i", size) + payload


class _Worker:
    """One process of a :class:`ProcessPool` and the parent's end of its pipe.

    Once started, its pipe is read by a callback that stays registered for the
    worker's whole life (no registration per call), and written without ever
    blocking the event loop, whatever the size of the arguments.
    """

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
        # The outcome of the call the worker runs now, if any.
        self.call: asyncio.Future[tuple[str, Any]] | None = None
        self.dead = False
        # Set when the pool itself stops the worker (cancel, close).
        self.retired = False
        self._out = bytearray()
        self._in = bytearray()
        # Waiting for the pipe to take the rest of a large message.
        self._writing = False
        self._on_answer: Callable[[_Worker], None] | None = None
        self._on_death: Callable[[_Worker], None] | None = None
        self._stopped = False
        # stop() runs in executor threads; two may race (a replace, aclose).
        self._stop_lock = threading.Lock()

    async def receive(self) -> tuple[str, Any]:
        """Wait for the worker's first message; WorkerCrashed if it died first."""
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
            raise WorkerCrashed(self.death()) from None

    def death(self) -> str:
        """Why the process is gone, for error messages."""
        return (
            f"worker process {self.process.name} (pid {self.pid}) died "
            f"({_exit_reason(self.process.exitcode)})"
        )

    def listen(
        self,
        on_answer: Callable[[_Worker], None],
        on_death: Callable[[_Worker], None],
    ) -> None:
        """Start reading answers; call ``on_answer`` after each, ``on_death`` once."""
        self._on_answer = on_answer
        self._on_death = on_death
        fd = self.conn.fileno()
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._readable)

    def submit(self, payload: bytes, call: asyncio.Future[tuple[str, Any]]) -> None:
        """Send ``payload`` (pickled handler arguments) to the idle worker.

        ``call`` gets the outcome, ``(status, value)``.
        """
        assert self.call is None
        self.call = call
        self._out += _frame(payload)
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        if self.dead:
            return
        loop = asyncio.get_running_loop()
        try:
            while self._out:
                written = os.write(self.conn.fileno(), self._out)
                del self._out[:written]
        except BlockingIOError:
            if not self._writing:
                self._writing = True
                loop.add_writer(self.conn.fileno(), self._flush)
            return
        except OSError:
            self._lost()
            return
        if self._writing:
            self._writing = False
            loop.remove_writer(self.conn.fileno())

    def _readable(self) -> None:
        try:
            data = os.read(self.conn.fileno(), 1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        buffer = self._in
        buffer += data
        while len(buffer) >= 4:
            (size,) = struct.unpack_from("!i", buffer)
            start = 4
            if size == -1:
                if len(buffer) < 12:
                    break
                (size,) = struct.unpack_from("!Q", buffer, 4)
                start = 12
            if len(buffer) < start + size:
                break
            outcome = pickle.loads(buffer[start : start + size])
            del buffer[: start + size]
            call, self.call = self.call, None
            if call is not None and not call.done():
                call.set_result(outcome)
            assert self._on_answer is not None
            self._on_answer(self)

    def detach(self) -> bool:
        """Stop watching the pipe, before the pool stops the worker; once.

        Returns whether this call detached it (``False``: already dead).
        """
        if self.dead:
            return False
        self.dead = True
        if self._on_death is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(self.conn.fileno())
                if self._writing:
                    loop.remove_writer(self.conn.fileno())
        return True

    def _lost(self) -> None:
        if self.detach():
            assert self._on_death is not None
            self._on_death(self)

    def stop(self) -> None:
        """End the process (SIGTERM, then SIGKILL) and close the pipe, once."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            with contextlib.suppress(OSError):
                self.conn.close()
            _stop(self.process)


class ProcessPool:
    """``size`` spawned processes that each serve calls for their whole life.

    Each worker runs ``initializer(*initargs)`` once, which returns the handler
    every call is given to: state built there (a loaded model) is never pickled
    again. Calls are served first come, first served. A call whose worker dies
    fails with :class:`WorkerCrashed`; a call cancelled (or timed out) while it
    runs kills its worker, and the cancellation goes on only once the worker is
    dead. Either way a fresh worker takes the dead one's place.

    Args:
        size: Number of worker processes.
        initializer: A module-level function returning the handler.
        initargs: Arguments of ``initializer``; they must pickle.
        envs: Extra environment of each worker, by slot, cycled (e.g. one
            ``CUDA_VISIBLE_DEVICES`` per GPU); set in the worker only.
        name: Prefix of the workers' process names.
        lazy: Start workers only when calls need them, one at a time, up to
            ``size``, instead of all of them in :meth:`start`. The call that
            starts a worker waits for it, and fails with the initializer's error
            if it fails; the next call tries again.
        telemetry: Told of every worker replaced, with the reason
            (``"crashed"`` or ``"cancelled"``).
    """

    def __init__(
        self,
        size: int,
        initializer: Callable[..., Callable[..., Any]],
        initargs: tuple[Any, ...] = (),
        *,
        envs: Sequence[Mapping[str, str]] = (),
        name: str = "deepaas-pool",
        lazy: bool = False,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self.name = name
        self.lazy = lazy
        self._initializer = initializer
        self._initargs = initargs
        self._envs = [dict(e) for e in envs]
        self._telemetry = telemetry
        # Free workers, and calls waiting for one (never both at once).
        self._idle: collections.deque[_Worker] = collections.deque()
        self._waiting: collections.deque[_Call] = collections.deque()
        self._workers: dict[int, _Worker] = {}
        self._starting: asyncio.Task[None] | None = None
        self._respawns: set[asyncio.Task[None]] = set()
        # Workers being started for calls (lazy), by slot.
        self._growing: dict[int, asyncio.Task[_Worker]] = {}
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
            if self._workers[s].dead or not self._workers[s].process.is_alive()
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
        missing = [s for s in range(self.size) if s not in self._workers]
        missing = [s for s in missing if s not in self._growing]
        results = await asyncio.gather(
            *(self._spawn(slot) for slot in missing), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for result in results:
            if isinstance(result, _Worker):
                self._workers[result.slot] = result
                self._release(result)
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
        started = loop.run_in_executor(None, process.start)
        worker = _Worker(slot, process, mine)
        try:
            try:
                await asyncio.shield(started)
            except asyncio.CancelledError:
                # process.start() goes on in its thread: let it end, so that the
                # process is stopped below rather than left running unwatched.
                with contextlib.suppress(Exception):
                    await started
                raise
            finally:
                # Only the child holds its end now: its death makes ours readable.
                theirs.close()
            worker.pid = process.pid
            status, value = await worker.receive()
        except BaseException:
            await loop.run_in_executor(None, worker.stop)
            raise
        if status != "ready":
            await loop.run_in_executor(None, worker.stop)
            raise value
        worker.listen(self._release, self._died)
        _LOG.info("Worker %s started (pid %s)", process.name, worker.pid)
        return worker

    async def _free_worker(self) -> _Worker | None:
        """An idle worker, or a new one (lazy); ``None`` when all are busy."""
        if not self.lazy:
            starting = self._starting
            if starting is not None and starting.done():
                # The hot path: no await at all.
                starting.result()
            else:
                await self.start()
        if self._closed:
            raise WorkerCrashed(f"{self.name} is shut down")
        idle = self._idle
        while idle:
            worker = idle.popleft()
            if not worker.dead:
                return worker
        if self.lazy and len(self._workers) + len(self._growing) < self.size:
            return await self._grow()
        return None

    async def _grow(self) -> _Worker:
        taken = self._workers.keys() | self._growing.keys()
        slot = min(s for s in range(self.size) if s not in taken)
        spawn = asyncio.ensure_future(self._spawn(slot))
        self._growing[slot] = spawn
        spawn.add_done_callback(functools.partial(self._grown, slot))
        try:
            # Shielded: a caller that goes away leaves a worker for the next one
            # rather than a process half started.
            return await asyncio.shield(spawn)
        except asyncio.CancelledError:
            spawn.add_done_callback(self._spare)
            raise

    def _grown(self, slot: int, spawn: asyncio.Task[_Worker]) -> None:
        del self._growing[slot]
        if not spawn.cancelled() and spawn.exception() is None:
            # Registered even when closed meanwhile: aclose() waits for the
            # workers being started, then stops every registered one.
            self._workers[slot] = spawn.result()

    def _spare(self, spawn: asyncio.Task[_Worker]) -> None:
        if not spawn.cancelled() and spawn.exception() is None and not self._closed:
            self._release(spawn.result())

    def _release(self, worker: _Worker) -> None:
        """Give ``worker``, free again, the next waiting call, or keep it idle.

        Called as soon as the worker's answer is read, so the next call is
        written to it at once, in the same turn of the event loop: the worker
        does not wait for the caller's task to be scheduled.
        """
        if worker.dead:
            return
        waiting = self._waiting
        while waiting:
            call = waiting.popleft()
            if call.future.done():
                continue  # cancelled while it waited
            if call.abandoned is not None and call.abandoned():
                call.future.cancel("the caller went away before the call started")
                continue
            call.worker = worker
            worker.submit(call.payload, call.future)
            return
        self._idle.append(worker)

    def _died(self, worker: _Worker) -> None:
        """The worker's pipe closed under it: fail its call, start another."""
        task = asyncio.ensure_future(self._bury(worker))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _bury(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        if not worker.retired:
            await loop.run_in_executor(None, worker.process.join, _TERM_GRACE_S)
        _fail(worker, WorkerCrashed(worker.death()))
        if not worker.retired:
            await self._replace(worker, "crashed")

    async def run(
        self, /, *args: Any, abandoned: Callable[[], bool] | None = None
    ) -> Any:
        """Hand ``args`` to the first free worker's handler.

        A call cancelled while it waits for a worker is never sent to one, nor is
        one for which ``abandoned()`` is true when a worker becomes free.

        Raises:
            WorkerCrashed: The worker died while running the call.
            RemoteError: The handler raised something other than a deepaas error.
            Exception: With ``lazy``, the initializer of the worker started for
                this call raised (as in :meth:`start`).
        """
        # Pickled before anything reaches a worker: arguments that do not
        # pickle fail the call alone.
        payload = pickle.dumps(args, _PROTOCOL)
        call = _Call(payload, abandoned, asyncio.get_running_loop().create_future())
        worker = await self._free_worker()
        # In line with the others; a free worker takes the first call at once.
        self._waiting.append(call)
        if worker is not None:
            self._release(worker)
        try:
            status, value = await call.future
        except asyncio.CancelledError:
            worker = call.worker
            if worker is not None and worker.call is call.future and not worker.dead:
                # The call runs on in the worker: kill it, and go on once it is
                # dead, so that a cancelled call's work has stopped when the
                # caller resumes.
                await asyncio.shield(self._replace(worker, "cancelled"))
            raise
        if status == "error":
            raise value
        return value

    def _replace(self, worker: _Worker, reason: str) -> asyncio.Future[None]:
        """Stop ``worker`` and start another in its slot; done once it is stopped.

        Its running call fails with :class:`WorkerCrashed`, if still waited for.
        """
        loop = asyncio.get_running_loop()
        worker.retired = True
        if worker.detach():
            _fail(worker, WorkerCrashed(f"{worker.process.name} was stopped"))
        stopped = loop.run_in_executor(None, worker.stop)
        if self._closed:
            return stopped
        _LOG.warning(
            "Replacing worker %s (pid %s): %s", worker.process.name, worker.pid, reason
        )
        self._telemetry.worker_restart(self.name, reason)
        task = asyncio.ensure_future(self._respawn(worker, stopped))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)
        return stopped

    async def _respawn(self, old: _Worker, stopped: asyncio.Future[None]) -> None:
        await stopped
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
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, worker.stop)
                return
            self._workers[old.slot] = worker
            self._release(worker)
            return

    async def aclose(self) -> None:
        """Stop every worker; calls still waiting never run."""
        self._closed = True
        starting = [*self._respawns, *self._growing.values()]
        for task in starting:
            task.cancel()
        # A worker being started stops itself when cancelled; wait for that.
        await asyncio.gather(*starting, return_exceptions=True)
        while self._waiting:
            waiting = self._waiting.popleft().future
            if not waiting.done():
                waiting.set_exception(WorkerCrashed(f"{self.name} is shut down"))
        workers = list(self._workers.values())
        self._workers.clear()
        for worker in workers:
            worker.retired = True
            if worker.detach():
                _fail(worker, WorkerCrashed(f"{self.name} is shut down"))
        if workers:
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(None, w.stop) for w in workers))


class _Call:
    """A call: its pickled arguments, and the future of its outcome."""

    __slots__ = ("abandoned", "future", "payload", "worker")

    def __init__(
        self,
        payload: bytes,
        abandoned: Callable[[], bool] | None,
        future: asyncio.Future[tuple[str, Any]],
    ) -> None:
        self.payload = payload
        self.abandoned = abandoned
        self.future = future
        # The worker it was sent to, once sent.
        self.worker: _Worker | None = None


def _fail(worker: _Worker, error: WorkerCrashed) -> None:
    """Fail the call ``worker`` was running, if any, with ``error``."""
    call, worker.call = worker.call, None
    if call is not None and not call.done():
        call.set_exception(error)
