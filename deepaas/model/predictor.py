"""Run a model's ``predict`` without blocking the event loop."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from deepaas.config import EXECUTORS
from deepaas.exceptions import CallTimedOut, ConfigurationError, Overloaded
from deepaas.executor import ProcessPool, ThreadExecutor
from deepaas.model import _batching, loading
from deepaas.model._inline import InlinePolicy
from deepaas.model.v2.wrapper import ModelWrapper
from deepaas.telemetry import NO_TELEMETRY, Telemetry

__all__ = ["Predictor"]

_LOG = logging.getLogger(__name__)

# Seconds a client refused for a full queue is told to wait.
RETRY_AFTER_S = 1
# Seconds a refusal is held before it is sent (see Predictor.admit). Clients
# that retry at once, not minding Retry-After, would otherwise keep the event
# loop so busy refusing them that the queued calls starve: served throughput
# collapsed to a few percent in the bench. Held (half the Retry-After), they
# cost an idle timer each.
REFUSAL_DELAY_S = 0.5


class Predictor:
    """Calls ``predict`` of one model, where ``executor`` says.

    A coroutine ``predict`` is awaited on the event loop, except with
    ``"process"``. A plain function runs, with ``"thread"`` and ``"async"``, in a
    pool of ``workers`` threads; with ``"auto"`` it starts there too, and moves
    onto the event loop while its calls stay under ``inline_threshold`` seconds
    (see :mod:`deepaas.model._inline`). ``"process"``: ``workers`` spawned
    processes each re-create the model from its ``target`` and warm it once,
    then serve calls for their whole life.

    Args:
        model: The model to call.
        workers: How many predictions may run at once.
        executor: ``"auto"``, ``"thread"``, ``"async"`` or ``"process"``.
        max_queue: Calls that may wait for a free worker; beyond, calls fail with
            :class:`Overloaded`. 0 means no limit.
        timeout: Seconds a call may take, waiting included, before it fails with
            :class:`CallTimedOut`; 0 means no limit. A thread cannot be stopped:
            a timed-out call in a thread runs on, its answer thrown away.
        gpus: GPU ids given round-robin to worker processes as
            ``CUDA_VISIBLE_DEVICES``.
        warm: Whether worker processes call the model's ``warm()`` when they
            start.
        inline_threshold: With ``"auto"``, the call duration in seconds under
            which a plain-function ``predict`` may run on the event loop; 0
            keeps it in its threads.
        max_batch_size: Above 1, and if the model has ``predict_batch``, calls
            are batched: up to this many go to one ``predict_batch`` call, and
            each worker runs one batch at a time. 1 calls ``predict`` once per
            call.
        max_batch_delay: Seconds the first call of a batch may wait for others
            while the model is busy.
        telemetry: Told of queue waits, batches and worker restarts.

    Raises:
        ConfigurationError: Unknown executor, or a model that cannot be
            re-created in another process with ``"process"``.
    """

    def __init__(
        self,
        model: ModelWrapper,
        *,
        workers: int = 1,
        executor: str = "thread",
        max_queue: int = 0,
        timeout: float = 0.0,
        gpus: Sequence[str] = (),
        warm: bool = True,
        inline_threshold: float = 0.0,
        max_batch_size: int = 1,
        max_batch_delay: float = 0.005,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        if executor not in EXECUTORS:
            raise ConfigurationError(
                f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"
            )
        self.model = model
        self.workers = workers
        self.executor = executor
        self.max_queue = max_queue
        self.timeout = timeout
        self.telemetry = telemetry
        self._in_flight = 0
        self._threaded = 0
        self._threads_idle = asyncio.Event()
        self._is_async = model.is_async("predict")
        self._inline: InlinePolicy | None = None
        if executor == "auto" and inline_threshold > 0 and not self._is_async:
            self._inline = InlinePolicy(inline_threshold)
        # Calls that may be running at once; beyond, they wait in the queue.
        self._running_max = workers
        self._threads: ThreadExecutor | None = None
        self._pool: ProcessPool | None = None
        if executor == "process":
            if model.target is None:
                raise ConfigurationError(
                    f"Model '{model.name}' cannot be re-created in a worker "
                    "process (it is defined in __main__ or inside a function); "
                    "use another executor"
                )
            self._pool = ProcessPool(
                workers,
                _serve_model,
                (model.name, model.target, warm),
                envs=[{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus],
                name=f"predict-{model.name}",
                telemetry=telemetry,
            )
        else:
            self._threads = ThreadExecutor(workers, name=f"predict-{model.name}")
        self._batcher: _batching.Batcher | None = None
        if max_batch_size > 1 and model.has(_batching.METHOD):
            self._batcher = _batching.Batcher(
                model.name,
                self._run_batch,
                max_size=max_batch_size,
                max_delay=max_batch_delay,
                lanes=workers,
                telemetry=telemetry,
            )
            self._running_max = workers * max_batch_size
            _LOG.info(
                "Model %r: batches of up to %d predictions, %g ms delay",
                model.name,
                max_batch_size,
                max_batch_delay * 1000,
            )
        elif max_batch_size > 1:
            _LOG.info("Model %r has no predict_batch(): not batched", model.name)

    @property
    def inline(self) -> bool:
        """Whether calls currently run on the event loop (``"auto"`` only)."""
        return self._inline is not None and self._inline.inline

    @property
    def pool(self) -> ProcessPool | None:
        """The worker processes, with the ``"process"`` executor."""
        return self._pool

    @property
    def in_flight(self) -> int:
        """Calls accepted and not yet answered: running or waiting."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Calls accepted that wait for a free worker."""
        return max(0, self._in_flight - self._running_max)

    @property
    def full(self) -> bool:
        """Whether a call now would be refused: ``max_queue`` calls wait already."""
        return bool(self.max_queue) and (
            self._in_flight >= self._running_max + self.max_queue
        )

    async def admit(self) -> None:
        """Refuse, after a pause, a call that would find the queue full.

        Meant to be awaited before a request's body is read, so that a refused
        upload is never stored. The pause (:data:`REFUSAL_DELAY_S`) keeps clients
        that retry at once from starving the accepted calls.

        Raises:
            Overloaded: The queue is full.
        """
        if self.full:
            await asyncio.sleep(REFUSAL_DELAY_S)
            raise self._overloaded()

    def _overloaded(self) -> Overloaded:
        return Overloaded(
            f"Model '{self.model.name}' is busy: {self.max_queue} calls are "
            "already waiting; retry later",
            RETRY_AFTER_S,
        )

    async def predict(self, **kwargs: Any) -> Any:
        """Return the model's prediction for validated ``kwargs``; see :meth:`run`."""
        return await self.run(kwargs)

    async def run(
        self, kwargs: dict[str, Any], *, abandoned: Callable[[], bool] | None = None
    ) -> Any:
        """Return the model's prediction for validated ``kwargs``.

        Args:
            kwargs: The arguments of ``predict``.
            abandoned: Asked when a worker becomes free for the call: ``True``
                (the client went away) drops the call without running it.

        Raises:
            Overloaded: ``max_queue`` calls already wait beside those running
                (``workers``, or ``workers * max_batch_size`` when batching).
            CallTimedOut: The call took longer than ``timeout``.
            WorkerCrashed: The worker process died during the call.
        """
        if self.full:
            raise self._overloaded()
        inline = self._inline
        if (
            inline is not None
            and inline.inline
            and not self._threaded
            and self._batcher is None
        ):
            # The hot path of cheap models: straight on the event loop, without
            # the coroutines below (a timeout could not interrupt it anyway).
            self._in_flight += 1
            try:
                return self._call_inline(kwargs, abandoned, inline)
            finally:
                self._in_flight -= 1
        # A plain counter rather than a context manager: this is the hot path.
        self._in_flight += 1
        try:
            if not self.timeout:
                return await self._dispatch(kwargs, abandoned)
            try:
                return await asyncio.wait_for(
                    self._dispatch(kwargs, abandoned), self.timeout
                )
            except asyncio.TimeoutError:
                raise CallTimedOut(
                    f"Model '{self.model.name}' predict() did not answer within "
                    f"{self.timeout:g} s"
                ) from None
        finally:
            self._in_flight -= 1

    async def _dispatch(
        self, kwargs: dict[str, Any], abandoned: Callable[[], bool] | None
    ) -> Any:
        if self._batcher is not None:
            return await self._batcher.submit(kwargs, abandoned)
        if self._is_async and self._pool is None:
            if abandoned is not None and abandoned():
                raise asyncio.CancelledError("the caller went away")
            return await self.model.finish(
                "predict", self.model.call("predict", **kwargs)
            )
        inline = self._inline
        if inline is not None and inline.inline:
            # Never beside a call still in a thread: with one worker, calls of a
            # model must not overlap, whichever way they run.
            while self._threaded:
                await self._threads_idle.wait()
            # An inline call that ran meanwhile may have moved the model back.
            if inline.inline:
                return self._call_inline(kwargs, abandoned, inline)
        taken = _batching.Started(abandoned)
        try:
            if self._pool is not None:
                return await self._pool.run("predict", kwargs, abandoned=taken)
            return await self._in_thread(kwargs, taken)
        finally:
            taken.report(self.telemetry, self.model.name)

    def _call_inline(
        self,
        kwargs: dict[str, Any],
        abandoned: Callable[[], bool] | None,
        inline: InlinePolicy,
    ) -> Any:
        if abandoned is not None and abandoned():
            raise asyncio.CancelledError("the caller went away")
        started = time.perf_counter()
        try:
            return self.model.call("predict", **kwargs)
        finally:
            inline.ran_inline(time.perf_counter() - started)

    async def _in_thread(
        self, kwargs: dict[str, Any], abandoned: Callable[[], bool]
    ) -> Any:
        inline = self._inline
        assert self._threads is not None
        self._threaded += 1
        self._threads_idle.clear()
        try:
            return await self._threads.run(
                _call_unless, abandoned, inline, self.model.call, "predict", kwargs
            )
        finally:
            self._threaded -= 1
            if not self._threaded:
                self._threads_idle.set()

    async def _run_batch(
        self, items: list[dict[str, Any]], start: Callable[[], bool]
    ) -> list[Any]:
        """Run one batch where the executor says; ``start`` is asked first."""
        method = _batching.METHOD
        results: list[Any]
        if self._pool is not None:
            results = await self._pool.run(method, items, abandoned=start)
        elif self.model.is_async(method):
            if start():
                raise asyncio.CancelledError("every caller went away")
            pending = self.model.call(method, items)
            results = self.model.batch_results(await self.model.finish(method, pending))
        else:
            assert self._threads is not None
            results = await self._threads.run(
                _batching.call_unless, start, self.model, items
            )
        return results

    async def start(self) -> None:
        """Start the worker processes (each warms its model); threads need none."""
        if self._pool is not None:
            await self._pool.start()

    async def warm(self) -> None:
        """Run the model's ``warm()`` once, off the event loop.

        With the ``"process"`` executor, start the workers, which warm their own
        copies instead.
        """
        if self._pool is not None:
            await self._pool.start()
            return
        assert self._threads is not None
        await self._threads.run(self.model.warm)

    async def aclose(self) -> None:
        """Stop the worker processes, or release the threads."""
        if self._batcher is not None:
            await self._batcher.aclose()
        if self._pool is not None:
            await self._pool.aclose()
        self.close()

    def close(self) -> None:
        """Release the worker threads."""
        if self._threads is not None:
            self._threads.shutdown()


def _serve_model(name: str, target: str, warm: bool) -> Callable[..., Any]:
    """Run in each worker process: load the model once, return the call handler."""
    model = loading.wrap(name, loading.resolve(target), target=target)
    if warm:
        model.warm()
    return functools.partial(_call, model)


def _call(model: ModelWrapper, method: str, kwargs: Any) -> Any:
    if method == _batching.METHOD:
        return _batching.call_sync(model, kwargs)
    result = model.call(method, **kwargs)
    if model.is_async(method):
        result = asyncio.run(model.finish(method, result))
    return result


def _call_unless(
    abandoned: Callable[[], bool] | None,
    inline: InlinePolicy | None,
    func: Callable[..., Any],
    method: str,
    kwargs: dict[str, Any],
) -> Any:
    """Run in a worker thread: skip a call nobody waits for, time the others."""
    if abandoned is not None and abandoned():
        raise asyncio.CancelledError("the caller went away before the call started")
    if inline is None:
        return func(method, **kwargs)
    started = time.perf_counter()
    try:
        return func(method, **kwargs)
    finally:
        inline.threaded(time.perf_counter() - started)
