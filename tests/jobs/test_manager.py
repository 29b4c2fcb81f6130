"""JobManager: trainings in warm worker processes, reused from one job to the next."""

import asyncio
import itertools
import os

import pytest

from deepaas.jobs import JobManager, JobStatus, MemoryJobStore
from deepaas.model import loading
from deepaas.telemetry import NoTelemetry
from tests._processes import alive
from tests.jobs._trainee import Trainee

MODEL = "trainee"


class Restarts(NoTelemetry):
    """Keeps the worker restarts it is told of."""

    def __init__(self):
        self.seen = []

    def worker_restart(self, pool, reason):
        self.seen.append((pool, reason))


@pytest.fixture
def model():
    return loading.wrap(MODEL, Trainee)


@pytest.fixture
def restarts():
    return Restarts()


@pytest.fixture
async def manager(tmp_path, restarts):
    manager = JobManager(
        MemoryJobStore(), log_dir=str(tmp_path / "jobs"), telemetry=restarts
    )
    yield manager
    workers = manager.worker_pids(MODEL)
    await manager.aclose()
    assert not any(alive(pid) for pid in workers)


async def _train(manager, model, **kwargs):
    return await manager.start(model, kwargs, public_args=kwargs)


async def _finished(manager, job, timeout=60.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        record = manager.get(MODEL, job.uuid)
        if record.status.finished:
            return record
        assert loop.time() < deadline, f"training {job.uuid} never ended"
        await asyncio.sleep(0.02)


async def _running(manager, job, timeout=60.0):
    """The pid of the worker that runs ``job``, once it has printed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not os.path.exists(manager.log_path(job.uuid)) or not _log(manager, job):
        assert loop.time() < deadline, "the training never started"
        await asyncio.sleep(0.02)
    (pid,) = manager.worker_pids(MODEL)
    return pid


def _log(manager, job):
    with open(manager.log_path(job.uuid)) as log:
        return log.read()


async def test_trainings_in_a_row_reuse_one_warm_worker(manager, model):
    first = await _finished(manager, await _train(manager, model))
    second = await _finished(manager, await _train(manager, model))
    assert (first.status, second.status) == (JobStatus.DONE, JobStatus.DONE)
    assert second.result["pid"] == first.result["pid"]
    assert manager.worker_pids(MODEL) == [first.result["pid"]]
    # Imported and warmed once; the model object lives on between trainings.
    assert (first.result["warmed"], second.result["warmed"]) == (1, 1)
    assert (first.result["trainings"], second.result["trainings"]) == (1, 2)
    # The first paid for starting the worker, the second did not.
    assert second.duration < first.duration


async def test_each_training_writes_its_own_log_and_progress(manager, model):
    first = await _finished(
        manager, await _train(manager, model, text="first job", fraction=0.5)
    )
    second = await _finished(manager, await _train(manager, model, text="second job"))
    silent = await _finished(manager, await _train(manager, model))
    assert first.result["pid"] == second.result["pid"] == silent.result["pid"]
    assert _log(manager, first) == "first job\nfirst job at fd 2\n"
    assert _log(manager, second) == "second job\nsecond job at fd 2\n"
    assert _log(manager, silent) == ""
    assert first.result["progress_file"] == manager.progress_path(first.uuid)
    assert second.result["progress_file"] == manager.progress_path(second.uuid)
    assert manager.progress(first.uuid) == {
        "fraction": 0.5,
        "message": "first job",
        "metrics": {},
    }
    assert manager.progress(second.uuid) is None


async def test_cancel_kills_the_worker_and_a_fresh_one_replaces_it(
    manager, model, restarts
):
    job = await _train(manager, model, text="started", seconds=60)
    assert job.status is JobStatus.RUNNING
    worker = await _running(manager, job)
    cancelled = await manager.delete(MODEL, job.uuid)
    assert (cancelled.status, cancelled.message) == (
        JobStatus.CANCELLED,
        "Training cancelled",
    )
    assert not alive(worker)
    after = await _finished(manager, await _train(manager, model))
    assert after.status is JobStatus.DONE
    assert after.result["pid"] != worker
    assert after.result["trainings"] == 1
    assert restarts.seen == [(f"train-{MODEL}", "cancelled")]


@pytest.mark.parametrize(
    ("action", "cause"), [("exit", "exit code 3"), ("segfault", "SIGSEGV")]
)
async def test_a_crashing_training_fails_alone(manager, model, restarts, action, cause):
    before = await _finished(manager, await _train(manager, model))
    crashed = await _finished(manager, await _train(manager, model, action=action))
    assert crashed.status is JobStatus.ERROR
    assert cause in crashed.message
    assert str(before.result["pid"]) in crashed.message
    after = await _finished(manager, await _train(manager, model))
    assert after.status is JobStatus.DONE
    assert after.result["pid"] != before.result["pid"]
    assert before.status is JobStatus.DONE
    assert restarts.seen == [(f"train-{MODEL}", "crashed")]


async def test_an_exception_that_does_not_pickle_keeps_its_text(manager, model):
    failed = await _finished(
        manager, await _train(manager, model, action="unpicklable")
    )
    assert (failed.status, failed.message) == (JobStatus.ERROR, "cannot pickle me")
    after = await _finished(manager, await _train(manager, model))
    assert after.result["trainings"] == 2  # the worker lives on


async def test_trainings_beyond_the_limit_queue_in_order(tmp_path, model):
    manager = JobManager(MemoryJobStore(), max_running=2, log_dir=str(tmp_path))
    try:
        jobs = [await _train(manager, model, seconds=0.3) for _ in range(5)]
        assert [j.status for j in jobs] == [JobStatus.RUNNING] * 2 + [
            JobStatus.QUEUED
        ] * 3
        done = [await _finished(manager, job) for job in jobs]
        assert {j.status for j in done} == {JobStatus.DONE}
        for before, after in itertools.pairwise(done):
            assert after.started >= before.started
        # Two workers, started as the first two trainings needed them, then reused.
        pids = {j.result["pid"] for j in done}
        assert pids == set(manager.worker_pids(MODEL))
        assert len(pids) == 2
    finally:
        await manager.aclose()


async def test_training_workers_get_their_own_gpus(tmp_path, model):
    manager = JobManager(
        MemoryJobStore(), log_dir=str(tmp_path / "jobs"), max_running=2, gpus=["7"]
    )
    try:
        first = await _finished(manager, await _train(manager, model))
        assert first.status is JobStatus.DONE, first.message
        assert first.result["gpu"] == "7"
        # The server process itself is never given the device.
        assert os.environ.get("CUDA_VISIBLE_DEVICES") != "7"
    finally:
        await manager.aclose()
