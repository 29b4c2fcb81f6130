"""The training job record and where records are kept."""

from __future__ import annotations

import builtins
import dataclasses
import datetime as _dt
import enum
from collections.abc import Iterator
from typing import Any, Protocol

from deepaas.exceptions import JobNotFound

__all__ = ["Job", "JobStatus", "JobStore", "MemoryJobStore"]


class JobStatus(str, enum.Enum):
    """States of a training, as 2.x clients read them (``done``, not ``completed``)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """Whether the job will not change any more."""
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


def _now() -> _dt.datetime:
    return _dt.datetime.now()


@dataclasses.dataclass(kw_only=True)
class Job:
    """One training: what was asked, and how it went.

    Attributes:
        uuid: Hex id of the job.
        model: Name of the model trained.
        args: The arguments as the client sent them (files as their description).
        status: Current state.
        created: When the job was accepted.
        started: When the training began to run.
        finished: When it ended, whatever the outcome.
        result: What ``train()`` returned, when it succeeded.
        message: Why it failed, was cancelled or interrupted; always text.
        owner: The server process that runs it (see :mod:`deepaas.jobs.owner`);
            ``None`` in records written before owners were kept.
    """

    uuid: str
    model: str
    args: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    created: _dt.datetime = dataclasses.field(default_factory=_now)
    started: _dt.datetime | None = None
    finished: _dt.datetime | None = None
    result: Any = None
    message: str | None = None
    owner: str | None = None

    @property
    def duration(self) -> _dt.timedelta | None:
        """Time spent running, once finished."""
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


class JobStore(Protocol):
    """Where job records live; implementations decide how long."""

    def add(self, job: Job) -> None:
        """Store a new job."""

    def get(self, model: str, uuid: str) -> Job:
        """Return a job of ``model``, or raise :class:`JobNotFound`."""

    def update(self, job: Job) -> None:
        """Store the job's new state."""

    def remove(self, model: str, uuid: str) -> None:
        """Forget a job, or raise :class:`JobNotFound`."""

    def list(self, model: str) -> list[Job]:
        """The jobs of ``model``, oldest first."""

    def unfinished(self) -> builtins.list[Job]:
        """Every job still ``queued`` or ``running``, of any model, oldest first."""

    def request_cancel(self, uuid: str) -> None:
        """Ask the process that runs job ``uuid`` to cancel it."""

    def cancel_requests(self) -> builtins.list[str]:
        """The unfinished jobs whose cancellation was asked for."""

    def count_by_status(self) -> dict[tuple[str, str], int]:
        """How many jobs there are, by ``(model, status value)``."""


class MemoryJobStore:
    """Jobs kept in this process only (lost on restart)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._cancel: set[str] = set()

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def add(self, job: Job) -> None:
        """Store a new job."""
        self._jobs[job.uuid] = job

    def get(self, model: str, uuid: str) -> Job:
        """Return a job of ``model``, or raise :class:`JobNotFound`."""
        job = self._jobs.get(uuid)
        if job is None or job.model != model:
            raise JobNotFound(uuid)
        return job

    def update(self, job: Job) -> None:
        """Store the job's new state."""
        self._jobs[job.uuid] = job

    def remove(self, model: str, uuid: str) -> None:
        """Forget a job, or raise :class:`JobNotFound`."""
        self.get(model, uuid)
        del self._jobs[uuid]
        self._cancel.discard(uuid)

    def list(self, model: str) -> list[Job]:
        """The jobs of ``model``, oldest first."""
        return [j for j in self._jobs.values() if j.model == model]

    def unfinished(self) -> builtins.list[Job]:
        """Every job still ``queued`` or ``running``, of any model, oldest first."""
        return [j for j in self._jobs.values() if not j.status.finished]

    def request_cancel(self, uuid: str) -> None:
        """Ask the process that runs job ``uuid`` to cancel it."""
        if uuid in self._jobs:
            self._cancel.add(uuid)

    def cancel_requests(self) -> builtins.list[str]:
        """The unfinished jobs whose cancellation was asked for."""
        return [
            u
            for u in self._cancel
            if u in self._jobs and not self._jobs[u].status.finished
        ]

    def count_by_status(self) -> dict[tuple[str, str], int]:
        """How many jobs there are, by ``(model, status value)``."""
        counts: dict[tuple[str, str], int] = {}
        for job in list(self._jobs.values()):
            key = (job.model, job.status.value)
            counts[key] = counts.get(key, 0) + 1
        return counts
