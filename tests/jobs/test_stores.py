"""Both job stores behave alike; the SQLite one keeps every field on disk."""

import datetime as dt
import multiprocessing
import sqlite3

import pytest

from deepaas.exceptions import InvalidModelResponse, JobNotFound
from deepaas.jobs import Job, JobStatus, MemoryJobStore, SQLiteJobStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryJobStore()
    return SQLiteJobStore(tmp_path / "sub" / "jobs.sqlite3")


def _job(uuid="a" * 32, model="m", **changes):
    return Job(
        uuid=uuid, model=model, args={"epochs": 3, "files": [{"x": 1}]}, **changes
    )


def test_add_get_list_remove(store):
    first, second, other = _job("1" * 32), _job("2" * 32), _job("3" * 32, model="o")
    for job in (first, second, other):
        store.add(job)
    assert [j.uuid for j in store.list("m")] == [first.uuid, second.uuid]
    assert store.get("m", first.uuid).args == first.args
    with pytest.raises(JobNotFound):
        store.get("o", first.uuid)
    store.remove("m", first.uuid)
    assert [j.uuid for j in store.list("m")] == [second.uuid]
    with pytest.raises(JobNotFound):
        store.remove("m", first.uuid)


def test_every_field_survives_a_round_trip(store):
    job = _job()
    store.add(job)
    job.status = JobStatus.DONE
    job.started = dt.datetime(2024, 1, 2, 3, 4, 5, 600000)
    job.finished = dt.datetime(2024, 1, 2, 3, 5, 0)
    job.result = {"loss": 0.1, "history": [1, 2]}
    job.message = "fine"
    store.update(job)
    assert store.get("m", job.uuid) == job


def test_unfinished_lists_queued_and_running_of_every_model(store):
    store.add(_job("1" * 32, status=JobStatus.RUNNING))
    store.add(_job("2" * 32, model="o"))
    store.add(_job("3" * 32, status=JobStatus.DONE))
    assert [j.uuid for j in store.unfinished()] == ["1" * 32, "2" * 32]


def test_count_by_status(store):
    assert store.count_by_status() == {}
    store.add(_job("1" * 32, status=JobStatus.RUNNING))
    store.add(_job("2" * 32, status=JobStatus.DONE))
    store.add(_job("3" * 32, status=JobStatus.DONE))
    store.add(_job("4" * 32, model="o", status=JobStatus.DONE))
    assert store.count_by_status() == {
        ("m", "running"): 1,
        ("m", "done"): 2,
        ("o", "done"): 1,
    }


def test_sqlite_records_outlive_the_store_object(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    SQLiteJobStore(path).add(_job())
    assert SQLiteJobStore(path).get("m", "a" * 32).args["epochs"] == 3


def test_sqlite_uses_wal_and_text_messages(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = SQLiteJobStore(path)
    store.add(_job(message="boom", status=JobStatus.ERROR))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT typeof(message) FROM jobs").fetchone() == ("text",)
    conn.close()


def test_sqlite_result_must_be_json(tmp_path):
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    job = _job()
    store.add(job)
    job.result = object()
    with pytest.raises(InvalidModelResponse):
        store.update(job)


def _add_many(path, prefix):
    store = SQLiteJobStore(path)
    for i in range(20):
        store.add(_job(f"{prefix}{i:031d}"))


def test_sqlite_is_shared_by_processes(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    SQLiteJobStore(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(path, p)) for p in "ab"]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert len(SQLiteJobStore(path).list("m")) == 40


def test_owner_survives_a_round_trip(store):
    store.add(_job(owner="host:1:2:3"))
    assert store.get("m", "a" * 32).owner == "host:1:2:3"


def test_cancel_requests_name_unfinished_jobs_asked_to_stop(store):
    store.add(_job("1" * 32, status=JobStatus.RUNNING))
    store.add(_job("2" * 32, status=JobStatus.RUNNING))
    store.add(_job("3" * 32, status=JobStatus.DONE))
    assert store.cancel_requests() == []
    store.request_cancel("1" * 32)
    store.request_cancel("3" * 32)
    assert store.cancel_requests() == ["1" * 32]
    # Updating the record (e.g. by its runner) keeps the request.
    job = store.get("m", "1" * 32)
    store.update(job)
    assert store.cancel_requests() == ["1" * 32]


def test_sqlite_adds_new_columns_to_an_old_database(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "uuid TEXT NOT NULL UNIQUE, model TEXT NOT NULL, args TEXT NOT NULL, "
            "status TEXT NOT NULL, created TEXT NOT NULL, started TEXT, "
            "finished TEXT, result TEXT, message TEXT)"
        )
        conn.execute(
            "INSERT INTO jobs (uuid, model, args, status, created) "
            "VALUES (?, 'm', '{}', 'running', '2024-01-01T00:00:00')",
            ("a" * 32,),
        )
    conn.close()
    store = SQLiteJobStore(path)
    assert store.get("m", "a" * 32).owner is None
    store.request_cancel("a" * 32)
    assert store.cancel_requests() == ["a" * 32]
