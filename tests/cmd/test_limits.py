"""``deepaas-run`` applies the connection limits, with one process or several."""

import signal
import socket
import time
import urllib.error
import urllib.request

import pytest

from deepaas.cmd.gunicorn import DeepaasApplication, graceful_timeout
from deepaas.config import Config
from tests._processes import alive
from tests.cmd.test_run import _env, _trainings
from tests.cmd.test_run_http_workers import _workers
from tests.cmd.test_shutdown import (
    PREDICT,
    _multipart,
    _post,
    _start_training,
    _wait_for,
)

LIMITS = ("--header-timeout", "1", "--max-header-size", "1000")


@pytest.fixture
def env(tmp_path, slow_pythonpath, server_tmp):
    return _env(tmp_path, PYTHONPATH=slow_pythonpath, TMPDIR=str(server_tmp))


def _get_status(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


def _check_connection_limits(server):
    big = {"X-Big": "a" * 1100}
    assert _get_status(server.url + "/v2/models/", {"X-Big": "a" * 900}) == 200
    assert _get_status(server.url + "/v2/models/", big) == 400

    # A client that sends its headers a byte at a time is cut off after the
    # header timeout, while others are served.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as slow:
        opened = time.monotonic()
        slow.sendall(b"GET /v2/models/ HTTP/1.1\r\nHost: x\r\n")
        closed = None
        for byte in b"X-Slow: " + b"a" * 200:
            try:
                slow.sendall(bytes([byte]))
                slow.settimeout(0.1)
                if slow.recv(1) == b"":
                    closed = time.monotonic() - opened
                    break
            except TimeoutError:
                assert _get_status(server.url + "/v2/models/") == 200
            except ConnectionError:
                closed = time.monotonic() - opened
                break
    assert closed is not None, "the slow client was never cut off"
    assert 0.8 < closed < 4


def test_one_process_applies_the_connection_limits(start, env):
    server = start("--model-name", "slow", *LIMITS, env=env)
    server.wait_until_serving()
    _check_connection_limits(server)


def test_http_workers_apply_the_limits_and_stop_at_a_second_signal(
    start, tmp_path, env, server_tmp, reaper
):
    server = start(
        "--model-name",
        "slow",
        "--http-workers",
        "2",
        "--state-dir",
        str(tmp_path / "state"),
        "--max-file-size",
        "1000",
        "--shutdown-trainings",
        "finish",
        *LIMITS,
        env=env,
    )
    server.wait_until_serving()
    _wait_for(lambda: len(_workers(server.proc.pid)) == 2, "not 2 workers")
    workers = _workers(server.proc.pid)
    _check_connection_limits(server)
    body, ctype = _multipart("data", b"x" * 1001)
    status, answer = _post(server.url + PREDICT, body, ctype)
    assert status == 413
    assert list(answer["errors"]) == ["data"]

    _start_training(server, 60)
    children = _wait_for(
        lambda: [c for w in workers for c in _trainings(w)], "no training process"
    )
    reaper.extend(children)

    server.proc.send_signal(signal.SIGTERM)
    time.sleep(2)
    assert server.proc.poll() is None, "did not wait for the training"
    stopped = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait(timeout=5) == 128 + signal.SIGTERM, server.stderr
    assert time.monotonic() - stopped < 3
    assert "SIGTERM again, exiting now" in server.stderr
    assert not any(alive(pid) for pid in workers)
    assert list(server_tmp.iterdir()) == []
    _wait_for(lambda: not any(alive(p) for p in children), "the training outlived it")


def test_http_workers_graceful_timeout_follows_the_grace_period():
    config = Config(http_workers=2, shutdown_grace=7.5)
    assert graceful_timeout(config) > 7.5
    assert DeepaasApplication(config).cfg.graceful_timeout == graceful_timeout(config)
    finishing = config.replace(shutdown_trainings="finish")
    assert graceful_timeout(finishing) >= 10**6
