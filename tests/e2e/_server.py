"""A real ``deepaas-run`` on loopback, boxed into directories the tests can watch.

The server runs with its working directory, ``TMPDIR`` (uploads) and state
directory (job records, training logs) all inside one ``root`` that holds nothing
else, so a test can tell whether anything was written where it should not be.
"""

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from deepaas.api.args import UPLOAD_PREFIX

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
MODELS = ("legacy", "modern")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class LiveServer:
    """A running ``deepaas-run`` and the directories it may write in."""

    proc: subprocess.Popen
    port: int
    root: Path  # holds cwd/, tmp/ and state/, and must hold nothing else
    cwd: Path
    tmp_dir: Path
    state_dir: Path
    log: Path

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method, path, *, data=None, headers=None, timeout=30):
        """``(status, headers, body)`` of one request (urllib: no client magic)."""
        req = urllib.request.Request(
            self.url + path, data=data, headers=headers or {}, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers, exc.read()

    def post_json(self, path, payload, timeout=30):
        status, _, body = self.request(
            "POST",
            path,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )
        return status, json.loads(body)

    def assert_healthy(self):
        """The process runs and an ordinary prediction of each model succeeds."""
        assert self.proc.poll() is None, self.log.read_text(errors="replace")
        status, body = self.post_json("/v2/models/legacy/predict/", {"count": 3})
        assert status == 200, body
        assert body["predictions"]["count"] == 3
        status, body = self.post_json("/v2/models/modern/predict/", {"text": "ok"})
        assert status == 200, body
        assert body == {"label": "modern:ok", "probability": 0.5}

    def stray_files(self):
        """Anything under ``root`` outside the tmp and state directories."""
        allowed = {self.cwd, self.tmp_dir, self.state_dir}
        stray = [p for p in self.root.iterdir() if p not in allowed]
        stray += list(self.cwd.iterdir())
        return stray

    def leftover_uploads(self):
        """Uploaded files still in ``TMPDIR`` (each call removes its own).

        They are files in the server's own ``deepaas-run-*`` directory.
        """
        return list(self.tmp_dir.rglob(f"{UPLOAD_PREFIX}*"))


def start_server(root, *, models=MODELS, extra_args=()):
    """Start ``deepaas-run`` boxed in ``root``; stop it with :func:`stop_server`."""
    cwd, tmp_dir, state_dir = root / "cwd", root / "tmp", root / "state"
    for path in (cwd, tmp_dir, state_dir):
        path.mkdir(parents=True)
    # The log and stevedore's cache live beside root, not in it.
    log = root.parent / f"{root.name}-server.log"
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(tmp_dir),
        "XDG_CACHE_HOME": str(root.parent / f"{root.name}-xdg-cache"),
    }
    env.pop("DEEPAAS_V2_MODEL", None)
    names = [arg for model in models for arg in ("--model-name", model)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deepaas.cmd.run",
                *names,
                "--listen-ip",
                "127.0.0.1",
                "--listen-port",
                str(port),
                "--state-dir",
                str(state_dir),
                *extra_args,
            ],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = LiveServer(proc, port, root, cwd, tmp_dir, state_dir, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            if server.request("GET", "/v2/models/", timeout=2)[0] == 200:
                return server
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(log.read_text(errors="replace"))
        time.sleep(0.1)


def stop_server(server):
    """SIGINT, as an operator would; killed (with its trainings) if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        server.proc.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(STOP_TIMEOUT)
