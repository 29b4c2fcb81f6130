"""``deepaas-run`` end to end: a real server process on loopback."""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from deepaas.cmd import run
from tests._processes import alive

STARTUP_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0


def _env(tmp_path, base=None, **extra):
    env = dict(os.environ if base is None else base)
    env.pop("DEEPAAS_V2_MODEL", None)
    env["PYTHONUNBUFFERED"] = "1"
    # A private stevedore entry-point cache: nothing stale, nothing left in ~/.cache.
    env.setdefault("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # Job database and training logs in the test's own directory.
    env.setdefault("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    env.update(extra)
    return env


class Server:
    """A ``deepaas-run`` subprocess; output goes to files (a pipe could fill up)."""

    def __init__(self, tmp_path, port, *args, env):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._out = tmp_path / f"deepaas-run-{port}.out"
        self._err = tmp_path / f"deepaas-run-{port}.err"
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deepaas.cmd.run",
                    "--listen-ip",
                    "127.0.0.1",
                    "--listen-port",
                    str(port),
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                # A process group of its own, killed whole (gunicorn's workers too).
                start_new_session=True,
            )

    @property
    def stdout(self):
        return self._out.read_text(errors="replace")

    @property
    def stderr(self):
        return self._err.read_text(errors="replace")

    def request(self, path, *, data=None):
        headers = {"Content-Type": "application/json"} if data is not None else {}
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()

    def wait_until_serving(self, path="/v2/models/"):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"deepaas-run exited with {self.proc.returncode}:\n{self.stderr}"
                )
            try:
                status, _ = self.request(path)
            except OSError:
                status = None
            if status == 200:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"deepaas-run not serving {path} in time:\n{self.stderr}")
            time.sleep(0.1)

    def wait(self, timeout=EXIT_TIMEOUT):
        return self.proc.wait(timeout=timeout)

    def kill(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=EXIT_TIMEOUT)


@pytest.fixture
def start(tmp_path, free_port):
    """``start(*args, env=...)`` starts one server; it is always killed afterwards."""
    servers = []

    def start(*args, env=None):
        server = Server(tmp_path, free_port, *args, env=env or _env(tmp_path))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


def _model_ids(body):
    return [model["id"] for model in json.loads(body)["models"]]


# --- Serving --------------------------------------------------------------------------


def test_serves_predicts_and_stops_cleanly_on_sigint(start):
    server = start("--model-name", "legacy")
    server.wait_until_serving()

    status, body = server.request("/v2/models/")
    assert status == 200
    assert _model_ids(body) == ["legacy"]

    status, body = server.request(
        "/v2/models/legacy/predict/", data={"message": "hi", "count": 3}
    )
    assert status == 200, body
    answer = json.loads(body)
    assert answer["status"] == "OK"
    assert answer["predictions"]["message"] == "hi"
    assert answer["predictions"]["count"] == 3

    assert f"http://127.0.0.1:{server.port}/v2/" in server.stdout  # the banner

    server.proc.send_signal(signal.SIGINT)
    assert server.wait() == 0, server.stderr
    assert "Traceback" not in server.stderr
    # One access line per request, by deepaas (aiohttp's own is off).
    line = 'deepaas.access: 127.0.0.1 "POST /v2/models/legacy/predict/ HTTP/1.1" 200'
    assert server.stderr.count(line) == 1, server.stderr
    assert "aiohttp.access" not in server.stderr


def test_json_logs_and_probes(start):
    server = start("--model-name", "legacy", "--log-format", "json")
    server.wait_until_serving("/readyz")
    assert server.request("/healthz")[0] == 200
    status, body = server.request("/metrics")
    assert status == 200
    assert b"deepaas_http_requests_total" in body
    assert server.request("/v2/models/")[0] == 200
    server.proc.send_signal(signal.SIGINT)
    assert server.wait() == 0, server.stderr
    entries = [json.loads(line) for line in server.stderr.splitlines() if line]
    access = [e for e in entries if e["logger"] == "deepaas.access"]
    # The probes and the metrics are not logged.
    assert [(e["method"], e["path"], e["status"]) for e in access] == [
        ("GET", "/v2/models/", 200)
    ]
    assert access[0]["request_id"]
    assert any(e["message"].startswith("Serving models") for e in entries)


def test_base_path(start):
    server = start("--model-name", "legacy", "--base-path", "/deepaas")
    server.wait_until_serving("/deepaas/v2/models/")

    status, body = server.request("/deepaas/v2/models/")
    assert status == 200
    assert _model_ids(body) == ["legacy"]
    status, _ = server.request("/v2/models/")
    assert status == 404


def test_model_chosen_by_environment_variable(start, tmp_path):
    server = start(env=_env(tmp_path, DEEPAAS_V2_MODEL="legacy"))
    server.wait_until_serving()

    status, body = server.request("/v2/models/")
    assert status == 200
    assert _model_ids(body) == ["legacy"]


def test_model_name_option_wins_over_environment_variable(start, tmp_path):
    server = start("--model-name", "static", env=_env(tmp_path, DEEPAAS_V2_MODEL="x"))
    server.wait_until_serving()

    status, body = server.request("/v2/models/")
    assert status == 200
    assert _model_ids(body) == ["static"]


# --- Failing to start ---------------------------------------------------------------


def test_unknown_model_exits_with_1_naming_it(start):
    server = start("--model-name", "nope")
    assert server.wait(timeout=STARTUP_TIMEOUT) == 1
    assert "nope" in server.stderr
    assert "Traceback" not in server.stderr


def test_broken_model_exits_with_1_naming_it_and_the_cause(start, broken_env):
    server = start("--model-name", "broken", env=broken_env.subprocess_env())
    assert server.wait(timeout=STARTUP_TIMEOUT) == 1
    assert "broken" in server.stderr
    assert "tensorflow_for_tests" in server.stderr
    assert "Traceback" not in server.stderr


def test_every_installed_model_fails_when_one_is_broken(start, broken_env):
    # No --model-name: serve everything installed; the broken one is an error.
    server = start(env=broken_env.subprocess_env())
    assert server.wait(timeout=STARTUP_TIMEOUT) == 1
    assert "tensorflow_for_tests" in server.stderr


def test_class_needing_arguments_exits_with_1(start, broken_env):
    server = start("--model-name", "needsargs", env=broken_env.subprocess_env())
    assert server.wait(timeout=STARTUP_TIMEOUT) == 1
    assert "NeedsArgsModel" in server.stderr


def test_invalid_option_value_exits_with_2(start):
    server = start("--model-name", "legacy", "--base-path", "no-slash")
    assert server.wait(timeout=STARTUP_TIMEOUT) == 2
    assert "base_path" in server.stderr


# --- Trainings across restarts ----------------------------------------------------


def _trainings(pid):
    """Spawned children of ``pid`` (not multiprocessing's resource tracker)."""
    out = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "spawn_main"], capture_output=True, text=True
    )
    return [int(p) for p in out.stdout.split()]


@pytest.fixture
def reaper():
    """Pids to kill after the test, should they outlive it."""
    pids = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_training_killed_with_the_server_is_interrupted_after_restart(start, reaper):
    first = start("--model-name", "legacy")
    first.wait_until_serving()
    status, body = first.request("/v2/models/legacy/train/", data={"sleep": 60})
    assert status == 200, body
    job = json.loads(body)
    assert job["status"] == "running"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not (children := _trainings(first.proc.pid)):
        assert time.monotonic() < deadline, "no training process"
        time.sleep(0.1)
    reaper.extend(children)

    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    # The training process notices its parent is gone and ends too.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children):
        assert time.monotonic() < deadline, "the training outlived its server"
        time.sleep(0.1)

    second = start("--model-name", "legacy")
    second.wait_until_serving()
    status, body = second.request(f"/v2/models/legacy/train/{job['uuid']}")
    assert status == 200, body
    record = json.loads(body)
    assert record["status"] == "interrupted"
    assert record["message"] == "The server stopped while this training was running"
    for key in ("uuid", "date", "args", "model", "created", "started"):
        assert record[key] == job[key], key
    assert record["finished"]


# --- In-process -----------------------------------------------------------------------


@pytest.fixture
def _keep_logging():
    # main() configures the root logger, as a command should; undo it.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("_keep_logging")
def test_main_in_process_unknown_model_returns_1(capsys, monkeypatch):
    monkeypatch.delenv("DEEPAAS_V2_MODEL", raising=False)
    try:
        code = run.main(["--model-name", "nope"])
    finally:
        logging.captureWarnings(False)
    assert code == 1
    assert "nope" in capsys.readouterr().err
