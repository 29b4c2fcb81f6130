"""Run a model's ``predict`` without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from deepaas.config import EXECUTORS
from deepaas.exceptions import CallTimedOut, ConfigurationError, Overloaded
from deepaas.executor import ProcessPool, ThreadExecutor
from deepaas.model import loading
from deepaas.model.v2.wrapper import ModelWrapper
from deepaas.telemetry import NO_TELEMETRY, Telemetry

__all__ = ["Predictor"]

# Seconds a client refused for a full queue is told to wait.
RETRY_AFTER_S = 1


class Predictor:
    """Calls ``predict`` of one model, where ``executor`` says.

    ``"thread"`` and ``"async"``: coroutines are awaited on the event loop, other
    functions run in a pool of ``workers`` threads. ``"process"``: ``workers``
    spawned processes each re-create the model from its ``target`` and warm it
    once, then serve calls for their whole life.

    Args:
        model: The model to call.
        workers: How many predictions may run at once.
        executor: ``"thread"``, ``"async"`` or ``"process"``.
        max_queue: Calls that may wait for a free worker; beyond, calls fail with
            :class:`Overloaded`. 0 means no limit.
        timeout: Seconds a call may take, waiting included, before it fails with
            :class:`CallTimedOut`; 0 means no limit. A thread cannot be stopped:
            a timed-out call in a thread runs on, its answer thrown away.
        gpus: GPU ids given round-robin to worker processes as
            ``CUDA_VISIBLE_DEVICES``.
        warm: Whether worker processes call the model's ``warm()`` when they
            start.
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
        return max(0, self._in_flight - self.workers)

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
            Overloaded: ``workers + max_queue`` calls are already in flight.
            CallTimedOut: The call took longer than ``timeout``.
            WorkerCrashed: The worker process died during the call.
        """
        async with self._slot():
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

    async def _dispatch(
        self, kwargs: dict[str, Any], abandoned: Callable[[], bool] | None
    ) -> Any:
        if self._pool is not None:
            return await self._pool.run("predict", kwargs, abandoned=abandoned)
        if self.model.is_async("predict"):
            return await self.model.finish(
                "predict", self.model.call("predict", **kwargs)
            )
        assert self._threads is not None
        return await self._threads.run(
            _call_unless, abandoned, self.model.call, "predict", **kwargs
        )

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self.max_queue and self._in_flight >= self.workers + self.max_queue:
            raise Overloaded(
                f"Model '{self.model.name}' is busy: {self.max_queue} calls are "
                "already waiting; retry later",
                RETRY_AFTER_S,
            )
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

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


def _call(model: ModelWrapper, method: str, kwargs: dict[str, Any]) -> Any:
    result = model.call(method, **kwargs)
    if model.is_async(method):
        result = asyncio.run(model.finish(method, result))
    return result


def _call_unless(
    abandoned: Callable[[], bool] | None,
    func: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> Any:
    if abandoned is not None and abandoned():
        raise asyncio.CancelledError("the caller went away before the call started")
    return func(*args, **kwargs)
