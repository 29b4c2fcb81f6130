"""Dynamic batching: the predictions that wait together go to ``predict_batch`` at once.

A :class:`Batcher` queues the calls of one model and hands them, up to
``max_size`` at a time, to a runner (a worker thread, the event loop, or a worker
process; the :class:`~deepaas.model.predictor.Predictor` provides it), with at
most ``lanes`` batches running at once. Each caller awaits its own future: it gets
its own result or its own error, and its cancellation (a timeout, a client that
went away) takes only it out of the batch.

When a batch starts, first come first served, as soon as a lane is free and:

* it is full; or
* its first call has waited ``max_delay``; or
* no batch of the model is running.

The last rule keeps an idle model's latency: a lone call never waits for company
that is not coming. Batches form from the calls that arrive while the model is
busy, and the delay only holds back calls that could have run beside a running
batch (with more than one lane), to run them together instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from deepaas.exceptions import InvalidModelResponse, WorkerCrashed
from deepaas.model.v2.wrapper import ModelWrapper
from deepaas.telemetry import NO_TELEMETRY, Telemetry

__all__ = ["METHOD", "Batcher", "Started", "call_sync", "call_unless"]

METHOD = "predict_batch"

Abandoned = Callable[[], bool]
Runner = Callable[[list[dict[str, Any]], Abandoned], Awaitable[Sequence[Any]]]
"""Runs ``predict_batch`` on a list of keyword dicts, asking ``abandoned()`` first.

The executors ask ``abandoned`` once a worker is free for the batch, and drop the
batch when it answers ``True``; a batch's hook also prunes, in place, the items
of callers gone by then.
"""


class Started:
    """Notes when a worker takes a call; it is the executors' ``abandoned`` hook.

    Executors ask ``abandoned()`` at the moment a worker is free for the call (in
    the worker thread, or on the event loop for processes): the time is noted
    then, and the answer is the caller's own ``abandoned``, if it has one.
    """

    __slots__ = ("abandoned", "arrived", "started")

    def __init__(self, abandoned: Abandoned | None) -> None:
        self.abandoned = abandoned
        self.arrived = time.monotonic()
        self.started: float | None = None

    def __call__(self) -> bool:
        self.started = time.monotonic()
        return self.abandoned is not None and self.abandoned()

    def report(self, telemetry: Telemetry, model: str) -> None:
        """Tell ``telemetry`` how long the call waited, if a worker took it."""
        if self.started is not None:
            telemetry.queue_wait(model, self.started - self.arrived)


class _Call:
    """One caller waiting in a :class:`Batcher`."""

    __slots__ = ("abandoned", "arrived", "batch", "future", "kwargs")

    def __init__(
        self,
        kwargs: dict[str, Any],
        future: asyncio.Future[Any],
        abandoned: Abandoned | None,
    ) -> None:
        self.kwargs = kwargs
        self.future = future
        self.abandoned = abandoned
        self.arrived = time.monotonic()
        self.batch: _Batch | None = None

    def gone(self) -> bool:
        """Whether nobody waits for the answer any more."""
        return self.future.done() or (self.abandoned is not None and self.abandoned())


class _Batch:
    """Calls handed to the model together, and the task that runs them."""

    __slots__ = ("calls", "dropped", "items", "started", "task")

    def __init__(self, calls: list[_Call]) -> None:
        self.calls = calls
        self.items = [call.kwargs for call in calls]
        self.dropped: list[_Call] = []
        self.started: float | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> bool:
        """Drop the callers gone by now; ``True`` when none is left.

        Runs when a worker is free for the batch, possibly in the worker thread:
        it swaps ``calls`` for a new list (never changing one the event loop may
        be reading) and trims ``items`` in place, before the runner sends them.
        """
        self.started = time.monotonic()
        gone = [call.gone() for call in self.calls]
        if any(gone):
            self.dropped = [c for c, g in zip(self.calls, gone, strict=True) if g]
            self.calls = [c for c, g in zip(self.calls, gone, strict=True) if not g]
            self.items[:] = [call.kwargs for call in self.calls]
        return not self.calls


class Batcher:
    """Groups the calls of one model into batches for ``predict_batch``.

    Args:
        model: The model's name, for messages and telemetry.
        runner: Runs one batch; see :data:`Runner`.
        max_size: Most calls in one batch.
        max_delay: Seconds the first call of a batch may wait for others while
            the model is busy.
        lanes: Batches that may run at once (the predictor's workers).
        telemetry: Told each batch's size and each call's wait for a worker.
    """

    def __init__(
        self,
        model: str,
        runner: Runner,
        *,
        max_size: int,
        max_delay: float,
        lanes: int = 1,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        if max_size < 1 or lanes < 1 or max_delay < 0:
            raise ValueError(
                "max_size and lanes must be at least 1, and max_delay 0 or more; "
                f"got {max_size}, {lanes} and {max_delay}"
            )
        self.model = model
        self.max_size = max_size
        self.max_delay = max_delay
        self.lanes = lanes
        self._runner = runner
        self._telemetry = telemetry
        self._queue: collections.deque[_Call] = collections.deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._closed = False

    async def submit(
        self, kwargs: dict[str, Any], abandoned: Abandoned | None = None
    ) -> Any:
        """Queue one call and return its own result from the batch it runs in.

        Args:
            kwargs: The arguments of this call, one item of ``predict_batch``.
            abandoned: Asked when the call's batch is formed and again when a
                worker takes it: ``True`` drops the call without running it.

        Raises:
            Exception: This call's own error, or its batch's.
            asyncio.CancelledError: The call was abandoned before it ran.
        """
        if self._closed:
            raise WorkerCrashed(f"Model '{self.model}' predictions are shut down")
        call = _Call(kwargs, asyncio.get_running_loop().create_future(), abandoned)
        self._queue.append(call)
        self._pump()
        try:
            return await call.future
        except asyncio.CancelledError:
            self._forget(call)
            raise

    def _forget(self, call: _Call) -> None:
        """Take a cancelled call out of its queue, or its batch out of its worker.

        A running batch is cancelled only when every one of its callers is gone
        (with processes, that kills its worker, as for a single call).
        """
        batch = call.batch
        if batch is None:
            with contextlib.suppress(ValueError):
                self._queue.remove(call)
        elif batch.task is not None and all(c.future.done() for c in batch.calls):
            batch.task.cancel()

    def _pump(self) -> None:
        """Start every batch that may start now; else set a timer for the next."""
        while self._queue and self._running < self.lanes and not self._closed:
            if not self._due():
                self._arm()
                return
            calls = self._take()
            if calls:
                self._launch(calls)

    def _due(self) -> bool:
        return (
            self._running == 0
            or len(self._queue) >= self.max_size
            or time.monotonic() >= self._queue[0].arrived + self.max_delay
        )

    def _arm(self) -> None:
        due = self._queue[0].arrived + self.max_delay
        if self._timer is not None:
            if self._timer_due == due:
                return
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(due - time.monotonic(), 0.0), self._tick)
        self._timer_due = due

    def _tick(self) -> None:
        self._timer = None
        self._pump()

    def _take(self) -> list[_Call]:
        calls: list[_Call] = []
        while self._queue and len(calls) < self.max_size:
            call = self._queue.popleft()
            if call.gone():
                # Its submit() sees the cancellation, finds it out of the queue.
                call.future.cancel()
                continue
            calls.append(call)
        return calls

    def _launch(self, calls: list[_Call]) -> None:
        batch = _Batch(calls)
        for call in calls:
            call.batch = batch
        self._running += 1
        batch.task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(batch.task)
        batch.task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: _Batch) -> None:
        try:
            results = await self._runner(batch.items, batch.start)
            if len(results) != len(batch.calls):
                raise InvalidModelResponse(
                    f"Model '{self.model}' predict_batch() returned "
                    f"{len(results)} results for {len(batch.calls)} requests"
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for i, call in enumerate(batch.calls):
                if not call.future.done():
                    call.future.set_exception(exc if i == 0 else _copy(exc))
        else:
            for call, result in zip(batch.calls, results, strict=True):
                if call.future.done():
                    continue
                if isinstance(result, BaseException):
                    call.future.set_exception(result)
                else:
                    call.future.set_result(result)
        finally:
            for call in (*batch.calls, *batch.dropped):
                call.future.cancel()  # only those still waiting: nothing to give
            self._report(batch)
            self._running -= 1
            self._pump()

    def _report(self, batch: _Batch) -> None:
        if batch.started is None or not batch.calls:
            return
        self._telemetry.batch(self.model, len(batch.calls))
        for call in batch.calls:
            self._telemetry.queue_wait(self.model, batch.started - call.arrived)

    async def aclose(self) -> None:
        """Cancel the waiting calls and the running batches; refuse new calls."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            self._queue.popleft().future.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _copy(exc: Exception) -> Exception:
    """A copy of ``exc`` for another caller: one exception object is raised once."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc


def call_sync(model: ModelWrapper, items: list[dict[str, Any]]) -> list[Any]:
    """Run the model's ``predict_batch(items)`` to the end, in this thread.

    A coroutine function is run with :func:`asyncio.run` (in a worker process).
    """
    result = model.call(METHOD, items)
    if model.is_async(METHOD):
        result = asyncio.run(model.finish(METHOD, result))
    return model.batch_results(result)


def call_unless(
    abandoned: Abandoned, model: ModelWrapper, items: list[dict[str, Any]]
) -> list[Any]:
    """:func:`call_sync`, unless ``abandoned()`` says nobody waits any more."""
    if abandoned():
        raise asyncio.CancelledError("every caller went away before the batch started")
    return call_sync(model, items)
