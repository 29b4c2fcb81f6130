"""Stopping ``deepaas-run`` with SIGTERM or SIGINT: a real server process."""

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from deepaas.jobs import JobStatus, SQLiteJobStore
from tests._processes import alive
from tests.cmd.test_run import EXIT_TIMEOUT, STARTUP_TIMEOUT, _env, _trainings

PREDICT = "/v2/models/slow/predict/"
TRAIN = "/v2/models/slow/train/"
LEGACY_TRAIN = "/v2/models/legacy/train/"


def _wait_for(predicate, message, timeout=STARTUP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
    return result


def _files(path):
    """Every file under ``path`` (directories not counted)."""
    return [os.path.join(d, f) for d, _, names in os.walk(path) for f in names]


def _multipart(name, content, filename="upload.bin"):
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _post(url, body, content_type, timeout=60):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def _refused(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def env(tmp_path, slow_pythonpath, server_tmp):
    return _env(tmp_path, PYTHONPATH=slow_pythonpath, TMPDIR=str(server_tmp))


def _store(tmp_path):
    return SQLiteJobStore(tmp_path / "state" / "jobs.sqlite3")


def _serve(start, tmp_path, env, *args):
    server = start(
        "--model-name", "slow", "--state-dir", str(tmp_path / "state"), *args, env=env
    )
    server.wait_until_serving()
    return server


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_lets_a_running_prediction_finish(
    start, tmp_path, env, server_tmp, signum
):
    server = _serve(start, tmp_path, env, "--shutdown-grace", "30")
    content = os.urandom(100_000)
    body, ctype = _multipart("data", content)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(_post, f"{server.url}{PREDICT}?seconds=3", body, ctype)
        # The upload is on disk: the prediction runs.
        _wait_for(lambda: _files(server_tmp), "the upload never reached the disk")
        stopped = time.monotonic()
        server.proc.send_signal(signum)
        _wait_for(lambda: _refused(server.port), "still accepting connections", 5)
        assert not answer.done(), "the prediction did not wait for the stop"
        status, result = answer.result(timeout=30)
    assert status == 200, result
    assert result["predictions"] == {"slept": 3.0, "size": len(content)}
    assert server.wait(timeout=EXIT_TIMEOUT) == 0, server.stderr
    assert time.monotonic() - stopped < 30
    assert "Traceback" not in server.stderr
    assert list(server_tmp.iterdir()) == []


def test_prediction_past_the_grace_period_is_cut_short(
    start, tmp_path, env, server_tmp
):
    server = _serve(start, tmp_path, env, "--shutdown-grace", "1")
    body, ctype = _multipart("data", b"x" * 1000)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(_post, f"{server.url}{PREDICT}?seconds=30", body, ctype)
        _wait_for(lambda: _files(server_tmp), "the upload never reached the disk")
        stopped = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        # The server exits although the model's thread still sleeps.
        assert server.wait(timeout=EXIT_TIMEOUT) == 0, server.stderr
        assert time.monotonic() - stopped < 8
        with pytest.raises(ConnectionError):  # closed unanswered
            answer.result(timeout=10)
    assert "1 prediction thread(s) still running" in server.stderr
    assert list(server_tmp.iterdir()) == []


def _start_training(server, seconds):
    req = urllib.request.Request(
        server.url + TRAIN,
        data=json.dumps({"seconds": seconds}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        job = json.loads(resp.read())
    assert job["status"] == "running", job
    return job["uuid"]


def test_sigterm_interrupts_a_running_training(
    start, tmp_path, env, server_tmp, reaper
):
    server = _serve(start, tmp_path, env)
    job_id = _start_training(server, 60)
    children = _wait_for(lambda: _trainings(server.proc.pid), "no training process")
    reaper.extend(children)

    server.proc.send_signal(signal.SIGTERM)
    assert server.wait(timeout=EXIT_TIMEOUT) == 0, server.stderr
    record = _store(tmp_path).get("slow", job_id)
    assert record.status is JobStatus.INTERRUPTED
    assert record.message == "The server stopped while this training was running"
    assert not any(alive(pid) for pid in children)
    assert list(server_tmp.iterdir()) == []


def test_finish_mode_waits_for_a_running_training_through_ctrl_c(
    start, tmp_path, env, server_tmp
):
    server = start(
        "--model-name",
        "legacy",
        "--state-dir",
        str(tmp_path / "state"),
        "--shutdown-trainings",
        "finish",
        env=env,
    )
    server.wait_until_serving()
    status, job = server.request(LEGACY_TRAIN, data={"sleep": 3})
    assert status == 200, job
    job_id = json.loads(job)["uuid"]
    status, queued = server.request(LEGACY_TRAIN, data={})
    assert json.loads(queued)["status"] == "queued"
    # The training runs its own code (it prints first): not starting up any more.
    _wait_for(
        lambda: b"training for" in server.request(f"{LEGACY_TRAIN}{job_id}/logs")[1],
        "the training never started",
    )

    stopped = time.monotonic()
    # As Ctrl-C in a terminal: to the whole process group, training included.
    os.killpg(server.proc.pid, signal.SIGINT)
    assert server.wait(timeout=EXIT_TIMEOUT + 5) == 0, server.stderr
    assert time.monotonic() - stopped > 1, server.stderr  # it did wait
    store = _store(tmp_path)
    record = store.get("legacy", job_id)
    assert record.status is JobStatus.DONE, record
    assert record.result == {"epochs": 1, "loss": 0.1}
    queued_record = store.get("legacy", json.loads(queued)["uuid"])
    assert queued_record.status is JobStatus.INTERRUPTED
    assert queued_record.message == "The server stopped while this training was queued"
    assert list(server_tmp.iterdir()) == []


def test_second_signal_exits_at_once(start, tmp_path, env, server_tmp, reaper):
    server = _serve(start, tmp_path, env, "--shutdown-trainings", "finish")
    _start_training(server, 60)
    children = _wait_for(lambda: _trainings(server.proc.pid), "no training process")
    reaper.extend(children)
    body, ctype = _multipart("data", b"x" * 1000)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_post, f"{server.url}{PREDICT}?seconds=60", body, ctype)
        _wait_for(lambda: _files(server_tmp), "the upload never reached the disk")

        server.proc.send_signal(signal.SIGTERM)
        _wait_for(
            lambda: "SIGTERM received" in server.stderr, "the first signal was missed"
        )
        time.sleep(0.5)
        assert server.proc.poll() is None  # waiting, for the prediction
        stopped = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        assert server.wait(timeout=5) == 128 + signal.SIGINT, server.stderr
        assert time.monotonic() - stopped < 3
    assert "SIGINT again, exiting now" in server.stderr
    assert list(server_tmp.iterdir()) == []
    # The training notices that its server is gone.
    _wait_for(lambda: not any(alive(p) for p in children), "the training outlived it")
