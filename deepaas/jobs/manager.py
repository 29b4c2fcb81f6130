"""Start, follow and cancel trainings, in worker processes kept warm per model."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as _dt
import logging
import os
import shutil
import tempfile
import uuid as _uuid
from collections.abc import Callable, Sequence
from typing import Any

from deepaas.exceptions import (
    ConfigurationError,
    InvalidModelResponse,
    ModelMethodNotImplemented,
)
from deepaas.executor import ProcessPool, RemoteError
from deepaas.jobs import _child
from deepaas.jobs.owner import make_owner, owner_alive
from deepaas.jobs.store import Job, JobStatus, JobStore
from deepaas.log import JOB_ID
from deepaas.model import progress
from deepaas.model.v2.wrapper import ModelWrapper
from deepaas.telemetry import NO_TELEMETRY, Telemetry

__all__ = ["JobManager"]

_LOG = logging.getLogger(__name__)
# DELETE waits this long for a cancelled training to stop (as 2.x did).
CANCEL_WAIT_S = 5.0
# How often a server looks for cancellations asked of it by other processes.
CANCEL_POLL_S = 0.5
INTERRUPTED_RUNNING = "The server stopped while this training was running"
INTERRUPTED_QUEUED = "The server stopped while this training was queued"

Cleanup = Callable[[], None]


class JobManager:
    """Runs trainings in worker processes, at most ``max_running`` at once.

    Each model gets a pool of up to ``max_running`` spawned worker processes,
    started when its trainings need them: a worker imports the model (and warms
    it) once, then runs one training after another, each with its output and
    progress in files of its own. The model object lives on in the worker from
    one training to the next. Cancelling a running training kills its worker; a
    worker that dies (killed, crashed) fails only the training it ran. Either
    way a fresh worker takes its place.

    Args:
        store: Where job records are kept.
        max_running: Trainings running at once; later ones wait as ``queued``.
        warm: Call the model's ``warm()`` in each training worker when it starts.
        log_dir: Where each training's output is written, as ``<uuid>.log``;
            ``None`` uses a temporary directory removed by :meth:`aclose`.
        server_pid: The pid of the server this manager belongs to: the gunicorn
            master when several HTTP workers share the store; by default this
            process. Recorded as part of each job's owner.
        poll_interval: Seconds between looks for cancellations that other
            processes sharing the store asked for (see :meth:`open`).
        telemetry: Told of every training worker replaced.
        gpus: GPU ids given round-robin to each model's training workers as
            ``CUDA_VISIBLE_DEVICES`` (set in the workers only).
    """

    def __init__(
        self,
        store: JobStore,
        *,
        max_running: int = 1,
        warm: bool = True,
        log_dir: str | None = None,
        server_pid: int | None = None,
        poll_interval: float = CANCEL_POLL_S,
        telemetry: Telemetry = NO_TELEMETRY,
        gpus: Sequence[str] = (),
    ) -> None:
        self.store = store
        self._gpus = tuple(gpus)
        self.owner = make_owner(os.getpid() if server_pid is None else server_pid)
        self._poll_interval = poll_interval
        self._watcher: asyncio.Task[None] | None = None
        self._own_log_dir = log_dir is None
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="deepaas-jobs-")
        os.makedirs(self.log_dir, exist_ok=True)
        self._warm = warm
        self._max_running = max_running
        self._telemetry = telemetry
        self._slots = asyncio.Semaphore(max_running)
        self._pools: dict[str, ProcessPool] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    async def start(
        self,
        model: ModelWrapper,
        kwargs: dict[str, Any],
        *,
        public_args: dict[str, Any],
        cleanup: Cleanup | None = None,
    ) -> Job:
        """Accept a training of ``model`` with validated ``kwargs``.

        Args:
            model: The model to train.
            kwargs: Arguments for ``train()``.
            public_args: The arguments as shown in the job record.
            cleanup: Called once the job has ended (e.g. removes uploaded files).

        Raises:
            ModelMethodNotImplemented: The model has no ``train``.
            ConfigurationError: The model cannot be re-created in another process.
        """
        if not model.has("train"):
            raise ModelMethodNotImplemented(model.name, "train")
        if model.target is None:
            raise ConfigurationError(
                f"Model '{model.name}' is not importable by name, so it cannot be "
                "trained in a separate process"
            )
        job = Job(
            uuid=_uuid.uuid4().hex,
            model=model.name,
            args=public_args,
            owner=self.owner,
        )
        if not self._slots.locked():
            # Start at once, so the record we answer with says "running" (as 2.x).
            await self._slots.acquire()
            self._mark_running(job)
            acquired = True
        else:
            acquired = False
        self.store.add(job)
        task = asyncio.create_task(self._run(job, model, kwargs, acquired, cleanup))
        self._tasks[job.uuid] = task
        return job

    def _pool(self, model: ModelWrapper) -> ProcessPool:
        pool = self._pools.get(model.name)
        if pool is None:
            # Lazy: a server that never trains a model keeps no copy of it warm.
            pool = ProcessPool(
                self._max_running,
                _child.serve,
                (model.name, model.target, self._warm),
                envs=[{"CUDA_VISIBLE_DEVICES": gpu} for gpu in self._gpus],
                name=f"train-{model.name}",
                lazy=True,
                telemetry=self._telemetry,
            )
            self._pools[model.name] = pool
        return pool

    def worker_pids(self, model: str) -> builtins.list[int | None]:
        """Process ids of the training workers of ``model`` started so far."""
        pool = self._pools.get(model)
        return [] if pool is None else pool.pids

    def _mark_running(self, job: Job) -> None:
        job.status = JobStatus.RUNNING
        job.started = _dt.datetime.now()

    async def _run(
        self,
        job: Job,
        model: ModelWrapper,
        kwargs: dict[str, Any],
        acquired: bool,
        cleanup: Cleanup | None,
    ) -> None:
        # This task's own context: every line logged about the job names it.
        JOB_ID.set(job.uuid)
        try:
            if not acquired:
                await self._slots.acquire()
                self._mark_running(job)
                self.store.update(job)
            try:
                result = await self._pool(model).run(
                    kwargs, self.log_path(job.uuid), self.progress_path(job.uuid)
                )
            finally:
                self._slots.release()
        except asyncio.CancelledError:
            if self._closing:
                self._finish(job, JobStatus.INTERRUPTED, message=_interrupted(job))
            else:
                self._finish(job, JobStatus.CANCELLED, message="Training cancelled")
            raise
        except RemoteError as exc:
            _LOG.error(
                "Training %s of %r failed:\n%s", job.uuid, job.model, exc.traceback_text
            )
            self._finish(job, JobStatus.ERROR, message=_message(exc))
        except Exception as exc:
            _LOG.exception("Training %s of %r failed", job.uuid, job.model)
            self._finish(job, JobStatus.ERROR, message=_message(exc))
        else:
            self._finish(job, JobStatus.DONE, result=result)
        finally:
            self._tasks.pop(job.uuid, None)
            if cleanup is not None:
                try:
                    cleanup()
                except Exception:
                    _LOG.exception("Cleaning up after training %s failed", job.uuid)

    def _finish(
        self,
        job: Job,
        status: JobStatus,
        *,
        result: Any = None,
        message: str | None = None,
    ) -> None:
        job.status = status
        job.finished = _dt.datetime.now()
        job.result = result
        job.message = message
        try:
            self.store.update(job)
        except InvalidModelResponse as exc:
            # A result the store cannot keep (not JSON) fails the job, visibly.
            job.status, job.result, job.message = JobStatus.ERROR, None, str(exc)
            with contextlib.suppress(Exception):
                self.store.update(job)
        except Exception:
            _LOG.exception("Storing the end of training %s failed", job.uuid)

    def get(self, model: str, job_id: str) -> Job:
        """The job ``job_id`` of ``model`` (raises ``JobNotFound``)."""
        return self.store.get(model, job_id)

    def list(self, model: str) -> list[Job]:
        """The jobs of ``model``, oldest first."""
        return self.store.list(model)

    async def delete(self, model: str, job_id: str) -> Job:
        """Cancel the job if it is still queued or running, else forget it.

        A cancelled job's record stays, with status ``cancelled``, so that
        clients can tell it was stopped; a finished job's record is removed.

        Returns:
            The record: as cancelled, or as it was when removed.
        """
        job = self.store.get(model, job_id)
        if job.status.finished:
            self.store.remove(model, job_id)
            for path in (self.log_path(job_id), self.progress_path(job_id)):
                with contextlib.suppress(OSError):
                    os.remove(path)
            _LOG.info("Training %s of %r removed (%s)", job_id, model, job.status.value)
            return job
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), CANCEL_WAIT_S)
        elif job.owner is not None and owner_alive(job.owner):
            # Run by another live process sharing the store: ask it, and wait.
            self.store.request_cancel(job_id)
            job = await self._wait_finished(model, job_id, CANCEL_WAIT_S)
            if not job.status.finished:
                _LOG.warning(
                    "Training %s of %r not stopped by %s in %.0f s",
                    job_id,
                    model,
                    job.owner,
                    CANCEL_WAIT_S,
                )
                return job
        else:
            # Its server is gone: only the record changes.
            self._finish(job, JobStatus.CANCELLED, message="Training cancelled")
        _LOG.info("Training %s of %r cancelled", job_id, model)
        return self.store.get(model, job_id)

    async def _wait_finished(self, model: str, job_id: str, timeout: float) -> Job:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            job = self.store.get(model, job_id)
            if job.status.finished or loop.time() >= deadline:
                return job
            await asyncio.sleep(0.1)

    def open(self) -> None:
        """Start following cancellations asked for by other processes.

        Call once the event loop runs; :meth:`aclose` stops it.
        """
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_cancels())

    async def _watch_cancels(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            if not self._tasks:
                continue
            try:
                wanted = self.store.cancel_requests()
            except Exception:
                _LOG.exception("Reading cancellation requests failed")
                continue
            for job_id in wanted:
                task = self._tasks.get(job_id)
                if task is not None and not task.done():
                    _LOG.info(
                        "Training %s cancelled by another process",
                        job_id,
                        extra={"job_id": job_id},
                    )
                    task.cancel()

    def log_path(self, job_id: str) -> str:
        """The file that holds what training ``job_id`` printed."""
        return os.path.join(self.log_dir, f"{job_id}.log")

    def progress_path(self, job_id: str) -> str:
        """The file that holds the latest progress report of training ``job_id``."""
        return os.path.join(self.log_dir, f"{job_id}.progress.json")

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """The latest progress report of training ``job_id``, if any."""
        state = progress.read(self.progress_path(job_id))
        if state is not None:
            state.pop("time", None)
        return state

    def interrupt_leftovers(self) -> builtins.list[Job]:
        """Mark jobs a previous server left unfinished as ``interrupted``.

        Jobs of a server that still runs (this one, a sibling HTTP worker or
        another server on this host sharing the store) are left alone. Call once
        at start-up, before accepting trainings.

        Returns:
            The jobs so marked.
        """
        jobs = [
            j
            for j in self.store.unfinished()
            if j.uuid not in self._tasks
            and not (j.owner is not None and owner_alive(j.owner))
        ]
        for job in jobs:
            self._finish(job, JobStatus.INTERRUPTED, message=_interrupted(job))
            _LOG.warning(
                "Training %s of %r was interrupted by a server stop",
                job.uuid,
                job.model,
                extra={"job_id": job.uuid},
            )
        return jobs

    async def aclose(self, *, finish: bool = False) -> None:
        """Stop every unfinished training and the training workers.

        Stopped trainings are recorded as ``interrupted``.

        Args:
            finish: Let running trainings finish first, however long they take;
                queued ones are interrupted all the same.
        """
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if finish:
            await self._finish_running()
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        pools = list(self._pools.values())
        self._pools.clear()
        await asyncio.gather(*(p.aclose() for p in pools))
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    async def _finish_running(self) -> None:
        running = {
            job.uuid
            for job in self.store.unfinished()
            if job.status is JobStatus.RUNNING and job.uuid in self._tasks
        }
        # Queued ones first, so that none takes the slot a finishing one frees.
        for uuid, task in list(self._tasks.items()):
            if uuid not in running:
                task.cancel()
        waiting = [t for u, t in self._tasks.items() if u in running and not t.done()]
        if waiting:
            _LOG.info("Waiting for %d running training(s) to finish", len(waiting))
            await asyncio.gather(*waiting, return_exceptions=True)


def _interrupted(job: Job) -> str:
    if job.status is JobStatus.QUEUED:
        return INTERRUPTED_QUEUED
    return INTERRUPTED_RUNNING


def _message(exc: BaseException) -> str:
    if isinstance(exc, RemoteError):
        return exc.message or exc.type_name
    return str(exc) or type(exc).__name__
