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
    message TEXT,
    owner TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_model ON jobs (model, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""

_COLUMNS = (
    "uuid, model, args, status, created, started, finished, result, message, owner"
)
_PLACEHOLDERS = ", ".join("?" * len(_COLUMNS.split(",")))
# Columns added since the first schema, for databases written before them.
_ADDED_COLUMNS = {
    "owner": "owner TEXT",
    "cancel_requested": "cancel_requested INTEGER NOT NULL DEFAULT 0",
}


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
            have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            for name, definition in _ADDED_COLUMNS.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE jobs ADD COLUMN {definition}")

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
                f"INSERT INTO jobs ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",
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
                "started = ?, finished = ?, result = ?, message = ?, owner = ? "
                "WHERE uuid = ?",
                (*values, uuid),
            )
            if cursor.rowcount == 0:
                conn.execute(
                    f"INSERT INTO jobs ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",
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

    def request_cancel(self, uuid: str) -> None:
        """Ask the process that runs job ``uuid`` to cancel it."""
        with self._connect() as conn:
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE uuid = ?", (uuid,))

    def cancel_requests(self) -> builtins.list[str]:
        """The unfinished jobs whose cancellation was asked for."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT uuid FROM jobs WHERE cancel_requested = 1 AND status IN (?, ?)",
                (JobStatus.QUEUED.value, JobStatus.RUNNING.value),
            ).fetchall()
        return [r[0] for r in rows]

    def count_by_status(self) -> dict[tuple[str, str], int]:
        """How many jobs there are, by ``(model, status value)``."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT model, status, COUNT(*) FROM jobs GROUP BY model, status"
            ).fetchall()
        return {(model, status): count for model, status, count in rows}


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
        job.owner,
    )


def _job(row: tuple[Any, ...]) -> Job:
    uuid, model, args, status, created, started, finished, result, message, owner = row
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
        owner=owner,
    )
