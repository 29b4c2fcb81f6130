import asyncio
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepaas.exceptions import WorkerCrashed
from deepaas.executor import ProcessPool, RemoteError, ThreadExecutor, run_in_process
from tests._processes import alive
from tests.jobs._trainee import Unpicklable


def _raise_unpicklable():
    raise Unpicklable(lambda: None)


def _kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def _sleep_writing_pid(path):
    Path(path).write_text(str(os.getpid()))
    time.sleep(60)


_PARENT_SCRIPT = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from deepaas.executor import run_in_process
from tests.test_executor import _sleep_writing_pid
asyncio.run(run_in_process(_sleep_writing_pid, sys.argv[2]))
"""


def _return_lambda():
    return lambda: None


async def test_result_comes_back():
    assert await run_in_process(pow, 3, 4) == 81


async def test_exception_comes_back_as_text_even_if_unpicklable():
    with pytest.raises(RemoteError) as info:
        await run_in_process(_raise_unpicklable)
    assert info.value.type_name == "Unpicklable"
    assert info.value.message == "cannot pickle me"
    assert "Traceback" in info.value.traceback_text


async def test_unpicklable_result_is_an_error():
    with pytest.raises(RemoteError, match="cannot be sent back"):
        await run_in_process(_return_lambda)


async def test_dead_worker_is_named():
    with pytest.raises(WorkerCrashed, match="SIGKILL"):
        await run_in_process(_kill_self)
    with pytest.raises(WorkerCrashed, match="exit code 3"):
        await run_in_process(os._exit, 3)


async def test_cancel_kills_the_process():
    task = asyncio.create_task(run_in_process(time.sleep, 60))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5


async def test_cancel_while_the_process_starts_leaves_no_process():
    name = "deepaas-test-cancelled-at-start"
    task = asyncio.create_task(run_in_process(time.sleep, 60, name=name))
    await asyncio.sleep(0)  # the start is under way, in a thread
    # Cancelled twice, as by two clients at once: neither may leave it running.
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The start goes on in its thread and the child may show up briefly (a
    # loaded machine starts it late), but it is stopped, whichever cancel won.
    deadline = time.monotonic() + 15
    await asyncio.sleep(1.0)
    while [p for p in multiprocessing.active_children() if p.name == name]:
        assert time.monotonic() < deadline, "the cancelled child kept running"
        await asyncio.sleep(0.1)
    # And it stays gone: nothing starts it again later.
    await asyncio.sleep(0.5)
    assert [p for p in multiprocessing.active_children() if p.name == name] == []


async def test_thread_executor_overlaps_calls():
    executor = ThreadExecutor(4)
    started = time.monotonic()
    await asyncio.gather(*(executor.run(time.sleep, 0.3) for _ in range(4)))
    assert time.monotonic() - started < 1.0
    executor.shutdown()


def test_thread_executor_needs_a_worker():
    with pytest.raises(ValueError, match="at least 1"):
        ThreadExecutor(0)


def test_child_exits_when_its_parent_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    root = str(Path(__file__).parent.parent)
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT_SCRIPT, root, str(pid_file)]
    )
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while alive(child):
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the orphaned child kept running")
        time.sleep(0.05)


def _pool_handler():
    return _pool_call


def _pool_call(action):
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "raise":
        raise ValueError("bad value")
    return os.getpid()


def _failing_initializer():
    raise RuntimeError("cannot load")


async def test_pool_worker_killed_by_signal_is_replaced():
    pool = ProcessPool(1, _pool_handler)
    try:
        first = await pool.run("pid")
        assert pool.pids == [first]
        with pytest.raises(WorkerCrashed, match="SIGKILL"):
            await pool.run("kill")
        with pytest.raises(RemoteError, match="bad value"):
            await pool.run("raise")
        second = await pool.run("pid")
        assert second != first
        assert await pool.run("pid") == second
    finally:
        await pool.aclose()
    assert not alive(second)


async def test_pool_initializer_failure_is_raised():
    pool = ProcessPool(2, _failing_initializer)
    with pytest.raises(RemoteError, match="cannot load"):
        await pool.start()


def _slow_call(seconds):
    time.sleep(seconds)
    return os.getpid()


def _slow_handler():
    return _slow_call


def _handler_once_file_exists(path):
    if not os.path.exists(path):
        raise RuntimeError("no file yet")
    return _slow_call


async def test_lazy_pool_starts_workers_as_calls_need_them():
    pool = ProcessPool(2, _slow_handler, lazy=True)
    try:
        assert pool.pids == []
        first = await pool.run(0)
        assert pool.pids == [first]
        assert await pool.run(0) == first  # idle: reused, no second worker
        both = await asyncio.gather(pool.run(0.5), pool.run(0.5), pool.run(0))
        assert set(both) == set(pool.pids)
        assert len(set(both)) == 2
    finally:
        await pool.aclose()
    assert not any(alive(pid) for pid in both)


async def test_lazy_pool_initializer_failure_fails_that_call_only(tmp_path):
    flag = tmp_path / "ready"
    pool = ProcessPool(1, _handler_once_file_exists, (str(flag),), lazy=True)
    try:
        with pytest.raises(RemoteError, match="no file yet"):
            await pool.run(0)
        assert pool.pids == []
        flag.touch()
        pid = await pool.run(0)
        assert pool.pids == [pid]
    finally:
        await pool.aclose()


async def test_caller_gone_while_its_worker_starts_leaves_the_worker():
    pool = ProcessPool(1, _slow_handler, lazy=True)
    try:
        call = asyncio.create_task(pool.run(0))
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(600):
            if pool.pids:
                break
            await asyncio.sleep(0.05)
        (spare,) = pool.pids
        assert await pool.run(0) == spare
    finally:
        await pool.aclose()
    assert not alive(spare)


async def test_cancelled_call_returns_once_its_worker_is_dead():
    restarts = []

    class Telemetry:
        def queue_wait(self, model, seconds):
            pass

        def batch(self, model, size):
            pass

        def worker_restart(self, pool, reason):
            restarts.append((pool, reason))

    pool = ProcessPool(1, _slow_handler, name="sleepy", telemetry=Telemetry())
    try:
        await pool.start()
        (worker,) = pool.pids
        call = asyncio.create_task(pool.run(60))
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert not alive(worker)
        assert restarts == [("sleepy", "cancelled")]
        assert await pool.run(0) != worker
    finally:
        await pool.aclose()


async def test_arguments_that_do_not_pickle_fail_the_call_alone():
    pool = ProcessPool(1, _slow_handler)
    try:
        first = await pool.run(0)
        with pytest.raises((AttributeError, pickle.PicklingError), match="pickle"):
            await pool.run(lambda: None)
        assert await pool.run(0) == first
    finally:
        await pool.aclose()


def _recording_handler(path):
    def record(tag, seconds):
        time.sleep(seconds)
        with open(path, "a") as fh:
            fh.write(f"{tag}\n")
        return tag

    return record


async def test_waiting_calls_run_in_order_and_skip_the_abandoned(tmp_path):
    log = tmp_path / "ran.txt"
    pool = ProcessPool(1, _recording_handler, (str(log),))
    gone = {"c"}
    try:
        await pool.start()
        first = asyncio.create_task(pool.run("a", 0.3))
        await asyncio.sleep(0.1)
        # These wait for the one worker; "c"'s caller is gone by its turn, and
        # "d" is cancelled while it waits: neither reaches the worker.
        waiting = [
            asyncio.create_task(
                pool.run(tag, 0.0, abandoned=lambda tag=tag: tag in gone)
            )
            for tag in "bcde"
        ]
        await asyncio.sleep(0.05)
        waiting[2].cancel()
        assert await first == "a"
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert results[0] == "b"
        assert isinstance(results[1], asyncio.CancelledError)
        assert isinstance(results[2], asyncio.CancelledError)
        assert results[3] == "e"
        assert log.read_text().split() == ["a", "b", "e"]
    finally:
        await pool.aclose()


async def test_calls_waiting_when_the_pool_closes_fail():
    pool = ProcessPool(1, _slow_handler)
    await pool.start()
    running = asyncio.create_task(pool.run(60))
    waiting = asyncio.create_task(pool.run(0))
    await asyncio.sleep(0.1)
    await pool.aclose()
    for call in (running, waiting):
        with pytest.raises(WorkerCrashed, match=r"shut down|stopped"):
            await call
