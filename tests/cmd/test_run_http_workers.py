"""``deepaas-run --http-workers 2``: gunicorn workers sharing one job store."""

import http.client
import json
import os
import signal
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._processes import alive
from tests.cmd.test_run import (
    EXIT_TIMEOUT,
    STARTUP_TIMEOUT,
    _env,
    _trainings,
    start,  # noqa: F401 (fixture)
)

WORKER = "X-Deepaas-Worker"
TRAIN = "/v2/models/legacy/train/"


class Connection:
    """A keep-alive connection: every request lands on the same worker."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        self.worker = None

    def call(self, method, path, data=None):
        headers = {"Content-Type": "application/json"} if data is not None else {}
        body = None if data is None else json.dumps(data).encode()
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        worker = int(resp.headers[WORKER])
        assert self.worker in (None, worker), "a keep-alive connection moved"
        self.worker = worker
        return resp.status, json.loads(payload) if payload else None

    def close(self):
        self.conn.close()


@pytest.fixture
def connections():
    opened = []
    yield opened
    for conn in opened:
        conn.close()


def _one_per_worker(port, connections, want=2):
    """Keep-alive connections, one to each of ``want`` different workers.

    Time-bounded rather than count-bounded: on a loaded machine a worker may
    still be loading its models when the first one already answers.
    """
    by_worker = {}
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if by_worker:
            time.sleep(0.02)
        conn = Connection(port)
        connections.append(conn)
        status, _ = conn.call("GET", "/v2/models/")
        assert status == 200
        if conn.worker in by_worker:
            conn.close()
        else:
            by_worker[conn.worker] = conn
        if len(by_worker) >= want or time.monotonic() > deadline:
            break
    assert len(by_worker) >= want, f"requests reached only workers {list(by_worker)}"
    return by_worker


def _workers(master):
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def _wait_for(predicate, message, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def _serve(start):  # noqa: F811
    server = start("--model-name", "legacy", "--http-workers", "2")
    server.wait_until_serving()
    _wait_for(lambda: len(_workers(server.proc.pid)) == 2, "not 2 workers", 20)
    return server


def test_training_is_seen_and_cancelled_from_every_worker(start, connections):  # noqa: F811
    server = _serve(start)
    by_worker = _one_per_worker(server.port, connections)
    assert set(by_worker) == _workers(server.proc.pid)

    owner, other = list(by_worker.values())[:2]
    status, job = owner.call("POST", TRAIN, {"sleep": 30})
    assert status == 200, job
    assert job["status"] == "running"
    # Running in its worker (not waiting for the worker to start, a worker
    # that a cancel leaves for the next training) once it has printed.
    _wait_for(
        lambda: b"training for" in server.request(f"{TRAIN}{job['uuid']}/logs")[1],
        "the training never started",
        STARTUP_TIMEOUT,
    )
    (child,) = _trainings(owner.worker)

    for conn in by_worker.values():
        status, record = conn.call("GET", TRAIN + job["uuid"])
        assert status == 200
        assert record["status"] == "running"
        status, listed = conn.call("GET", TRAIN)
        assert [j["uuid"] for j in listed] == [job["uuid"]]

    # Cancelled through a worker that does not run it.
    started = time.monotonic()
    status, record = other.call("DELETE", TRAIN + job["uuid"])
    assert status == 200, record
    assert record["status"] == "cancelled"
    assert time.monotonic() - started < 5
    _wait_for(lambda: not alive(child), "the training process still runs", 5)
    for conn in by_worker.values():
        status, record = conn.call("GET", TRAIN + job["uuid"])
        assert status == 200
        assert record["status"] == "cancelled"
        assert record["message"] == "Training cancelled"

    server.proc.send_signal(signal.SIGINT)
    assert server.wait() == 0, server.stderr


def test_new_worker_leaves_a_sibling_training_running(start, connections):  # noqa: F811
    server = _serve(start)
    conn = Connection(server.port)
    connections.append(conn)
    status, job = conn.call("POST", TRAIN, {"sleep": 30})
    assert status == 200, job
    _wait_for(lambda: _trainings(conn.worker), "no training process")

    # A third worker starts, and looks for trainings left by dead servers.
    server.proc.send_signal(signal.SIGTTIN)
    _wait_for(lambda: len(_workers(server.proc.pid)) == 3, "no third worker", 20)
    by_worker = _one_per_worker(server.port, connections, want=3)
    for other in by_worker.values():
        status, record = other.call("GET", TRAIN + job["uuid"])
        assert record["status"] == "running", record


def test_sigint_stops_workers_and_trainings(start, connections):  # noqa: F811
    server = _serve(start)
    workers = _workers(server.proc.pid)
    conn = Connection(server.port)
    connections.append(conn)
    status, job = conn.call("POST", TRAIN, {"sleep": 30})
    assert status == 200, job
    _wait_for(lambda: _trainings(conn.worker), "no training process")
    children = _trainings(conn.worker)
    conn.close()

    server.proc.send_signal(signal.SIGINT)
    assert server.wait(timeout=EXIT_TIMEOUT + 20) == 0, server.stderr
    assert "Traceback" not in server.stderr
    _wait_for(
        lambda: not any(alive(p) for p in {*workers, *children}),
        "a worker or training outlived the server",
    )


def test_unknown_model_stops_the_server_with_1(start):  # noqa: F811
    server = start("--model-name", "nope", "--http-workers", "2")
    assert server.wait(timeout=STARTUP_TIMEOUT) == 1
    assert "deepaas-run: Model 'nope' not found" in server.stderr


def _scrape(port):
    """The samples of ``/metrics``, from whichever worker answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        text = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


LISTED = (
    "deepaas_http_requests_total",
    (("method", "GET"), ("model", ""), ("route", "/v2/models/"), ("status", "200")),
)


def test_metrics_add_up_every_worker(start, connections, tmp_path):  # noqa: F811
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = start(
        "--model-name",
        "legacy",
        "--http-workers",
        "2",
        env=_env(tmp_path, TMPDIR=str(temp)),
    )
    server.wait_until_serving()
    _wait_for(lambda: len(_workers(server.proc.pid)) == 2, "not 2 workers", 20)
    (metrics_dir,) = temp.glob("deepaas-metrics-*")
    by_worker = _one_per_worker(server.port, connections)

    before = _scrape(server.port)[LISTED]
    for conn in by_worker.values():
        for _ in range(3):
            assert conn.call("GET", "/v2/models/")[0] == 200
    # Whichever worker answers the scrape, both workers' requests are counted.
    for _ in range(4):
        assert _scrape(server.port)[LISTED] == before + 6

    # The training counts are read from the shared store once, not per worker.
    owner = next(iter(by_worker.values()))
    status, job = owner.call("POST", TRAIN, {"sleep": 0})
    assert status == 200, job
    _wait_for(
        lambda: owner.call("GET", TRAIN + job["uuid"])[1]["status"] == "done",
        "the training did not finish",
        30,
    )
    samples = _scrape(server.port)
    done = ("deepaas_trainings", (("model", "legacy"), ("status", "done")))
    assert samples[done] == 1

    # A worker that dies: gunicorn replaces it; its gauges go, its counts stay.
    victim = owner.worker
    os.kill(victim, signal.SIGKILL)
    _wait_for(
        lambda: not (metrics_dir / f"gauge_livesum_{victim}.db").exists(),
        "the dead worker's gauges are still there",
        20,
    )
    assert (metrics_dir / f"counter_{victim}.db").exists()
    _wait_for(lambda: len(_workers(server.proc.pid)) == 2, "no new worker", 20)
    assert _scrape(server.port)[LISTED] >= before + 6

    server.proc.send_signal(signal.SIGINT)
    assert server.wait(timeout=EXIT_TIMEOUT + 20) == 0, server.stderr
    assert not metrics_dir.exists()
