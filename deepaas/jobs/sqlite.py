"""Job records in an SQLite file, kept across restarts and shared by processes."""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import json
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

from deepaas.exceptions import JobNotFound
from deepaas.jobs.store import Job, JobStatus
from deepaas.model.results import to_json

__all__ = ["SQLiteJobStore"]

# Seconds a call waits for another process's write lock before failing.
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    args TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    result TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS jobs_model ON jobs (model, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""

_COLUMNS = "uuid, model, args, status, created, started, finished, result, message"


class SQLiteJobStore:
    """Jobs kept in an SQLite database (WAL mode), one connection per call.

    Several server processes may share the file: each call is a transaction of
    its own and SQLite serialises writers.

    Args:
        path: The database file; its directory is created if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S)
        try:
            with conn:  # commits, or rolls back on error
                yield conn
        finally:
            conn.close()

    def add(self, job: Job) -> None:
        """Store a new job."""
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _row(job),
            )

    def get(self, model: str, uuid: str) -> Job:
        """Return a job of ``model``, or raise :class:`JobNotFound`."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE uuid = ? AND model = ?",
                (uuid, model),
            ).fetchone()
        if row is None:
            raise JobNotFound(uuid)
        return _job(row)

    def update(self, job: Job) -> None:
        """Store the job's new state."""
        uuid, *values = _row(job)
        with self._connect() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET model = ?, args = ?, status = ?, created = ?, "
                "started = ?, finished = ?, result = ?, message = ? WHERE uuid = ?",
                (*values, uuid),
            )
            if cursor.rowcount == 0:
                conn.execute(
                    f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (uuid, *values),
                )

    def remove(self, model: str, uuid: str) -> None:
        """Forget a job, or raise :class:`JobNotFound`."""
        with self._connect() as conn:
            cursor = conn.execute(
                "DELETE FROM jobs WHERE uuid = ? AND model = ?", (uuid, model)
            )
        if cursor.rowcount == 0:
            raise JobNotFound(uuid)

    def list(self, model: str) -> list[Job]:
        """The jobs of ``model``, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE model = ? ORDER BY seq", (model,)
            ).fetchall()
        return [_job(r) for r in rows]

    def unfinished(self) -> builtins.list[Job]:
        """Every job still ``queued`` or ``running``, of any model, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE status IN (?, ?) ORDER BY seq",
                (JobStatus.QUEUED.value, JobStatus.RUNNING.value),
            ).fetchall()
        return [_job(r) for r in rows]


def _iso(value: _dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: str | None) -> _dt.datetime | None:
    return None if value is None else _dt.datetime.fromisoformat(value)


def _row(job: Job) -> tuple[Any, ...]:
    return (
        job.uuid,
        job.model,
        json.dumps(job.args),
        job.status.value,
        job.created.isoformat(),
        _iso(job.started),
        _iso(job.finished),
        None if job.result is None else to_json(job.result),
        None if job.message is None else str(job.message),
    )


def _job(row: tuple[Any, ...]) -> Job:
    uuid, model, args, status, created, started, finished, result, message = row
    return Job(
        uuid=uuid,
        model=model,
        args=json.loads(args),
        status=JobStatus(status),
        created=_dt.datetime.fromisoformat(created),
        started=_from_iso(started),
        finished=_from_iso(finished),
        result=None if result is None else json.loads(result),
        message=message,
    )
