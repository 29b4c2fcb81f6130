r"""Compare the HTTP answers of deepaas with those of DEEPaaS 2.6.0, side by side.

A developer tool, not part of the package: it needs nothing beyond the standard
library. Give it two virtual environments, each with ``deepaas-run`` and the
fixture models of ``tests/fixtures/`` installed::

    python -m venv ../deepaas-2.6.0-venv
    ../deepaas-2.6.0-venv/bin/pip install deepaas==2.6.0 \\
        tests/fixtures/legacy_pkg tests/fixtures/modern_pkg
    python tools/compare_2x.py --ref-venv ../deepaas-2.6.0-venv --ours-venv .venv \\
        --markdown /tmp/compare.md

For each model (``legacy``, then ``static``) it starts both servers on
``127.0.0.1`` on two free ports, waits until they answer, sends both the same
requests and prints one table per request: status, media type, the headers that
matter and the body of each side, after the volatile parts (uuids, dates,
durations, temporary paths, ports) have been replaced by placeholders, and a
verdict:

``same``
    identical after normalisation;
``same (key order)``
    the same JSON value, keys in another order;
``superset``
    our JSON holds every key and value of 2.6.0's and adds some;
``DIFF``
    anything else (which parts differ is listed).

A difference is not necessarily a bug: ``docs/user/compatibility.rst`` lists the
intended ones. The exit status is 0 whatever the differences (this is a report);
both servers are always stopped, by process id.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

# A 1x1 PNG (69 bytes), the same picture the fixture models use.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ"
    "/pLvAAAAAElFTkSuQmCC"
)
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
    "image/webp,*/*;q=0.8"
)
BOUNDARY = "----compare2xBoundary7MA4YWxkTrZu0gW"
# Headers shown in the report (others, such as Date, are noise).
SHOWN_HEADERS = ("Location", "Allow", "Content-Disposition")
BODY_LIMIT = 1500
SIDES = ("2.6.0", "ours")


# --------------------------------------------------------------------------
# Requests and answers
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Req:
    """One request sent identically to both servers."""

    title: str
    method: str
    path: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes | None = None
    follow: bool = False

    def describe(self) -> str:
        """A one-line description of the request."""
        text = f"{self.method} {self.path}"
        extra = [f"{k}: {v.replace(BOUNDARY, '...')}" for k, v in self.headers.items()]
        if self.body is not None and BOUNDARY.encode() in self.body:
            parts = re.findall(rb'name="([^"]*)"(?:; filename="([^"]*)")?', self.body)
            names = [
                f"{n.decode()}=@{f.decode()}" if f else n.decode() for n, f in parts
            ]
            extra.append(f"multipart parts: {', '.join(names)}")
        elif self.body is not None:
            shown = self.body if len(self.body) < 200 else self.body[:200] + b"..."
            extra.append(f"body {shown.decode('utf-8', 'replace')!r}")
        if self.follow:
            extra.append("redirects followed with the same method and body")
        return text + (f" ({'; '.join(extra)})" if extra else "")


@dataclasses.dataclass
class Answer:
    """What one server answered (already normalised)."""

    status: str
    content_type: str
    headers: dict[str, str]
    body: str
    json_value: Any = None
    is_json: bool = False
    raw_json: Any = None


@dataclasses.dataclass
class Row:
    """One compared request: its description and both answers."""

    group: str
    title: str
    request: str
    answers: tuple[Answer, Answer]
    verdict: str


class Normaliser:
    """Replaces the volatile parts of answers by placeholders."""

    UUID = re.compile(
        r"\b[0-9a-f]{32}\b|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
        r"[0-9a-f]{12}\b"
    )
    DATE = re.compile(
        r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"
    )
    DURATION = re.compile(r"^-?\d+:\d{2}:\d{2}(\.\d+)?$")
    PORT = re.compile(r"\b(127\.0\.0\.1|localhost):\d+")
    TMPNAME = re.compile(r"\btmp[a-z0-9_]{6,}(\.\w+)?\b")

    def __init__(self, extra_paths: Sequence[str] = ()) -> None:
        roots = {tempfile.gettempdir(), "/tmp", "/var/tmp", *extra_paths}
        alternatives = "|".join(
            re.escape(r.rstrip("/")) for r in sorted(roots, key=len, reverse=True)
        )
        self.paths = re.compile(rf"(?:{alternatives})(?:/[^\s\"',;)>]*)?")

    def text(self, value: str) -> str:
        """Normalise a piece of text."""
        value = self.paths.sub("<tmp>", value)
        value = self.UUID.sub("<uuid>", value)
        value = self.DATE.sub("<date>", value)
        value = self.PORT.sub(r"\1:<port>", value)
        value = self.TMPNAME.sub("<tmpname>", value)
        if self.DURATION.match(value):
            return "<duration>"
        return value

    def json(self, value: Any, key: str | None = None) -> Any:
        """Normalise a JSON value (durations in seconds included)."""
        if isinstance(value, dict):
            return {k: self.json(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        if key == "duration" and isinstance(value, (int, float)):
            return "<seconds>"
        return value


def _send(
    port: int, req: Req, timeout: float
) -> tuple[int, str, dict[str, str], bytes, list[str]]:
    """Send ``req``; follow 307/308 when asked. Returns the last answer and hops."""
    method, path, body = req.method, req.path, req.body
    hops: list[str] = []
    for _ in range(4):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in req.headers.items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            headers = {k.title(): v for k, v in resp.getheaders()}
            status = resp.status
            reason = resp.reason
        finally:
            conn.close()
        location = headers.get("Location")
        if req.follow and status in (307, 308) and location:
            hops.append(f"{status} -> {location}")
            path = urllib.parse.urljoin(path, location)
            continue
        status_text = f"{status}" + (f" {reason}" if reason else "")
        return status, status_text, headers, data, hops
    raise RuntimeError(f"too many redirects for {req.path}")


def fetch(port: int, req: Req, norm: Normaliser, timeout: float) -> Answer:
    """Send ``req`` to one server and normalise what it answers."""
    try:
        _, status_text, headers, data, hops = _send(port, req, timeout)
    except (OSError, http.client.HTTPException, RuntimeError) as err:
        return Answer(f"<no answer: {type(err).__name__}: {err}>", "", {}, "")
    ctype = headers.get("Content-Type", "")
    shown = {
        name: norm.text(headers[name]) for name in SHOWN_HEADERS if name in headers
    }
    status = " / ".join([*(norm.text(h) for h in hops), status_text])
    return _answer(status, ctype, shown, data, norm)


def _answer(
    status: str, ctype: str, headers: dict[str, str], data: bytes, norm: Normaliser
) -> Answer:
    media = ctype.split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            raw = json.loads(data)
        except ValueError:
            pass
        else:
            value = norm.json(raw)
            return Answer(status, ctype, headers, json.dumps(value), value, True, raw)
    if media.startswith("text/") or not data:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return Answer(status, ctype, headers, norm.text(text))
    digest = hashlib.sha256(data).hexdigest()[:12]
    return Answer(status, ctype, headers, f"<{len(data)} bytes, sha256 {digest}...>")


def _subset(small: Any, big: Any) -> bool:
    """Whether every key and value of ``small`` is in ``big`` (recursively)."""
    if isinstance(small, dict) and isinstance(big, dict):
        return all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list) and isinstance(big, list):
        return len(small) == len(big) and all(
            _subset(a, b) for a, b in zip(small, big, strict=True)
        )
    return bool(small == big and type(small) is type(big))


def verdict(ref: Answer, ours: Answer) -> str:
    """Compare two answers: ``same``, ``same (key order)``, ``superset`` or DIFF."""
    diffs: list[str] = []
    if ref.status != ours.status:
        diffs.append("status")
    if ref.content_type != ours.content_type:
        same_media = (
            ref.content_type.split(";")[0].strip()
            == ours.content_type.split(";")[0].strip()
        )
        diffs.append("type (charset)" if same_media else "type")
    if ref.headers != ours.headers:
        diffs.append("headers")
    body = ""
    if ref.body != ours.body:
        if ref.is_json and ours.is_json and ref.json_value == ours.json_value:
            body = "key order"
        elif ref.is_json and ours.is_json and _subset(ref.json_value, ours.json_value):
            body = "superset"
        else:
            diffs.append("body")
    if not diffs:
        return {"": "same", "key order": "same (key order)"}.get(body, body)
    if body:
        diffs.append(f"body {body}")
    return "DIFF: " + ", ".join(diffs)


# --------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------


def query(path: str, **params: Any) -> str:
    """``path`` with a query string (lists become repeated keys)."""
    return f"{path}?{urllib.parse.urlencode(params, doseq=True)}"


def form(**params: Any) -> tuple[dict[str, str], bytes]:
    """An urlencoded form body."""
    body = urllib.parse.urlencode(params, doseq=True).encode()
    return {"Content-Type": "application/x-www-form-urlencoded"}, body


def json_body(value: Any) -> tuple[dict[str, str], bytes]:
    """A JSON body."""
    return {"Content-Type": "application/json"}, json.dumps(value).encode()


def multipart(
    fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, str, str, bytes]]
) -> tuple[dict[str, str], bytes]:
    """A multipart/form-data body: text fields, then ``(name, file, type, data)``."""
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    for name, filename, ctype, data in files:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return {"Content-Type": "multipart/form-data; boundary=" + BOUNDARY}, b"".join(
        parts
    )


def post(
    title: str,
    path: str,
    body: tuple[dict[str, str], bytes] | None = None,
    headers: dict[str, str] | None = None,
    follow: bool = False,
) -> Req:
    """A POST request with an optional body."""
    all_headers = dict(headers or {})
    data = None
    if body is not None:
        all_headers = {**body[0], **all_headers}
        data = body[1]
    return Req(title, "POST", path, all_headers, data, follow)


def get(title: str, path: str, **headers: str) -> Req:
    """A GET request."""
    return Req(title, "GET", path, dict(headers))


# --------------------------------------------------------------------------
# The request lists
# --------------------------------------------------------------------------


def common_requests(model: str) -> list[Req]:
    """Requests that make sense for any model."""
    m = f"/v2/models/{model}"
    return [
        get("versions", "/"),
        get("v2 version", "/v2/"),
        get("models index", "/v2/models/"),
        get("model metadata", f"{m}/"),
        get("unknown model metadata", "/v2/models/nope/"),
        post("predict on an unknown model", "/v2/models/nope/predict/"),
        get("unknown path", "/nope"),
        get("missing slash (GET /v2)", "/v2"),
        get("missing slash (GET model)", m),
        get("doubled slashes", "//v2//models/"),
        Req("HEAD on /", "HEAD", "/"),
        post("wrong method: POST /v2/models/", "/v2/models/"),
        get("wrong method: GET predict", f"{m}/predict/"),
        Req("wrong method: PUT predict", "PUT", f"{m}/predict/"),
        get("wrong method without slash: GET predict", f"{m}/predict"),
        Req("wrong method: DELETE train list", "DELETE", f"{m}/train/"),
        get("GET /ui", "/ui"),
    ]


def legacy_requests() -> list[Req]:
    """Predict requests for the ``legacy`` fixture."""
    p = "/v2/models/legacy/predict/"
    js = {"Accept": "application/json"}
    full = {
        "message": "q",
        "count": 3,
        "ratio": 1.5,
        "flag": "true",
        "choice": "b",
        "numbers": [1, 2],
    }
    reqs = [
        post("query args", query(p, **full), headers=js),
        post("urlencoded form", p, form(**full), js),
        post(
            "multipart form with a file",
            p,
            multipart(
                [("message", "m"), ("count", "5"), ("numbers", "7"), ("numbers", "8")],
                [("image", "tiny.png", "image/png", PNG)],
            ),
            js,
        ),
        post(
            "JSON body",
            p,
            json_body(
                {
                    "message": "j",
                    "count": 6,
                    "flag": True,
                    "numbers": [9],
                    "choice": "c",
                }
            ),
            js,
        ),
        post(
            "query wins over JSON",
            query(p, message="qs"),
            json_body({"message": "j"}),
            js,
        ),
        post(
            "file under a non-file field",
            p,
            multipart([], [("message", "t.png", "image/png", PNG)]),
            js,
        ),
        post(
            "plain text under the file field",
            p,
            multipart([("image", "notafile")], []),
            js,
        ),
        post(
            "invalid JSON body",
            p,
            ({"Content-Type": "application/json"}, b"{bad json"),
            js,
        ),
        post("JSON array body", p, json_body([1, 2]), js),
        post(
            "text/plain body", p, ({"Content-Type": "text/plain"}, b"message=zzz"), js
        ),
    ]
    for value in ("True", "False", "true", "1", "yes", "maybe", ""):
        reqs.append(post(f"boolean flag={value!r}", query(p, flag=value), headers=js))
    for name, value in (
        ("count", "abc"),
        ("count", "11"),
        ("count", "1.5"),
        ("ratio", "abc"),
        ("choice", "z"),
        ("numbers", "1,2"),
    ):
        reqs.append(
            post(f"invalid {name}={value}", query(p, **{name: value}), headers=js)
        )
    reqs += [
        post("JSON float for an int", p, json_body({"count": 7.5}), js),
        post(
            "several invalid args + Accept application/xml",
            query(p, count=11, choice="z", flag="maybe"),
            headers={"Accept": "application/xml"},
        ),
        post("unknown args", query(p, bogus=1, other=2), headers=js),
        post(
            "several invalid args",
            query(p, count=11, choice="z", flag="maybe"),
            headers=js,
        ),
        post("JSON list for a List field", p, json_body({"numbers": [9, 10]}), js),
        post("JSON scalar for a List field", p, json_body({"numbers": 5}), js),
        post("JSON list for a string field", p, json_body({"message": ["a"]}), js),
        post("urlencoded text for the file field", p, form(image="notafile"), js),
        post("repeated scalar", query(p, message=["a", "b"], count=[2, 3]), headers=js),
    ]
    for accept in (
        None,
        "*/*",
        "application/json",
        "text/plain",
        "image/png",
        "application/xml",
        BROWSER_ACCEPT,
        "text/plain;q=0.9",
    ):
        headers = {} if accept is None else {"Accept": accept}
        reqs.append(post(f"Accept header: {accept}", p, headers=headers))
    reqs += [
        post("accept query=text/plain, no Accept", query(p, accept="text/plain")),
        post("accept query=image/png, no Accept", query(p, accept="image/png")),
        post(
            "accept query=text/plain + Accept */*",
            query(p, accept="text/plain"),
            headers={"Accept": "*/*"},
        ),
        post("accept query=application/xml", query(p, accept="application/xml")),
        post("model raises (fail=true)", query(p, fail="true")),
        post(
            "model raises (fail=true), Accept text/plain",
            query(p, fail="true"),
            headers={"Accept": "text/plain"},
        ),
        post(
            "missing slash: POST predict (no follow)", query(p.rstrip("/"), message="x")
        ),
        post(
            "missing slash: POST predict, followed",
            query(p.rstrip("/"), message="x"),
            form(count=4),
            js,
            follow=True,
        ),
        post(
            "doubled slash: POST predict, followed",
            "/v2//models/legacy/predict/",
            form(count=2),
            js,
            follow=True,
        ),
    ]
    return reqs


def static_requests() -> list[Req]:
    """Predict requests for the ``static`` fixture (no accept argument)."""
    p = "/v2/models/static/predict/"
    return [
        post("defaults", p),
        post("query args", query(p, x=5, y=6)),
        post("JSON args", p, json_body({"x": 2, "y": 3})),
        post("invalid int", query(p, x="abc")),
        post("Accept text/plain (no accept arg)", p, headers={"Accept": "text/plain"}),
        post("Accept application/xml", p, headers={"Accept": "application/xml"}),
        post("accept query (no accept arg)", query(p, accept="text/plain")),
    ]


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One ``deepaas-run`` process, in its own session so its workers can go too."""

    def __init__(self, label: str, venv: Path, model: str, workdir: Path) -> None:
        self.label = label
        self.venv = venv
        self.model = model
        self.port = free_port()
        self.log_path = workdir / f"{label}-{model}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (does not wait)."""
        exe = self.venv / "bin" / "deepaas-run"
        if not exe.exists():
            raise RuntimeError(f"{exe} does not exist")
        env = {k: v for k, v in os.environ.items() if k != "DEEPAAS_V2_MODEL"}
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            str(exe),
            "--listen-ip",
            "127.0.0.1",
            "--listen-port",
            str(self.port),
            "--model-name",
            self.model,
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.log_path.parent,
                env=env,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        """Wait until ``GET /v2/`` answers 200, or raise with the log's tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} server exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", "/v2/")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            time.sleep(0.3)
        raise RuntimeError(f"{self.label} server not ready:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server: SIGTERM to its process, then SIGKILL to what is left.

        Only the main process gets SIGTERM: DEEPaaS 2.6.0 hangs when its pool
        workers get it too. Leftovers of the session it leads are then killed.
        """
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        # The session id is the server's pid (start_new_session): its workers.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None


@contextlib.contextmanager
def servers(
    venvs: tuple[Path, Path], model: str, workdir: Path, timeout: float
) -> Iterator[tuple[Server, Server]]:
    """Run both servers for ``model``; always stop them."""
    pair = (
        Server("ref", venvs[0], model, workdir),
        Server("ours", venvs[1], model, workdir),
    )
    try:
        for server in pair:
            server.start()
        for server in pair:
            server.wait_ready(timeout)
        yield pair
    finally:
        for server in pair:
            server.stop()


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------


class Comparison:
    """Runs requests against both servers and collects the rows."""

    def __init__(self, norm: Normaliser, timeout: float) -> None:
        self.norm = norm
        self.timeout = timeout
        self.rows: list[Row] = []

    def add(
        self, group: str, title: str, request: str, answers: Sequence[Answer]
    ) -> None:
        """Record a compared pair of answers."""
        pair = (answers[0], answers[1])
        self.rows.append(Row(group, title, request, pair, verdict(*pair)))

    def run(self, group: str, pair: tuple[Server, Server], reqs: Sequence[Req]) -> None:
        """Send every request to both servers."""
        for req in reqs:
            answers = [fetch(s.port, req, self.norm, self.timeout) for s in pair]
            self.add(group, req.title, req.describe(), answers)

    def training(self, group: str, pair: tuple[Server, Server], model: str) -> None:
        """Start, poll, list and delete trainings on both servers."""
        t = f"/v2/models/{model}/train/"
        steps: list[tuple[str, Callable[[Server, dict[str, str]], Req]]] = [
            ("list (none yet)", lambda s, st: get("", t)),
            ("start", lambda s, st: post("", query(t, epochs=3, sleep=0.5))),
            ("poll until finished", lambda s, st: get("", t + st.get("uuid", "none"))),
            ("list", lambda s, st: get("", t)),
            ("delete", lambda s, st: Req("", "DELETE", t + st.get("uuid", "none"))),
            ("get after delete", lambda s, st: get("", t + st.get("uuid", "none"))),
            ("list after delete", lambda s, st: get("", t)),
            ("delete unknown", lambda s, st: Req("", "DELETE", t + "0123")),
            ("get unknown", lambda s, st: get("", t + "0123")),
            (
                "invalid arg (epochs=abc)",
                lambda s, st: post("", query(t, epochs="abc")),
            ),
            ("form body", lambda s, st: post("", t, form(epochs=5))),
            ("missing slash (no follow)", lambda s, st: post("", t.rstrip("/"))),
        ]
        if model == "legacy":
            steps.append(
                (
                    "failing training (fail=true)",
                    lambda s, st: post("", query(t, fail="true")),
                )
            )
            steps.append(
                (
                    "poll failing training",
                    lambda s, st: get("", t + st.get("uuid", "none")),
                )
            )
        state: list[dict[str, str]] = [{}, {}]
        for title, make in steps:
            answers = []
            request = ""
            for index, server in enumerate(pair):
                req = make(server, state[index])
                poll = title.startswith("poll")
                answer = self._poll(server, req) if poll else self._fetch(server, req)
                raw = answer.raw_json
                if req.method == "POST" and isinstance(raw, dict) and raw.get("uuid"):
                    state[index]["uuid"] = str(raw["uuid"])
                answers.append(answer)
                request = req.describe()
            request = self.norm.text(request)
            self.add(group, f"training: {title}", request, answers)

    def _fetch(self, server: Server, req: Req) -> Answer:
        return fetch(server.port, req, self.norm, self.timeout)

    def _poll(self, server: Server, req: Req) -> Answer:
        deadline = time.monotonic() + 30
        answer = self._fetch(server, req)
        while time.monotonic() < deadline:
            value = answer.json_value
            if not (
                isinstance(value, dict) and value.get("status") in ("running", "queued")
            ):
                break
            time.sleep(0.3)
            answer = self._fetch(server, req)
        return answer

    def swagger(self, group: str, pair: tuple[Server, Server], model: str) -> None:
        """Compare the predict and train operations of ``/swagger.json``."""
        req = get("", "/swagger.json")
        docs: list[Any] = []
        for server in pair:
            try:
                _, _, _, data, _ = _send(server.port, req, self.timeout)
                docs.append(json.loads(data))
            except (
                OSError,
                ValueError,
                http.client.HTTPException,
                RuntimeError,
            ) as err:
                docs.append({"<error>": str(err)})
        top = [
            {"swagger": d.get("swagger"), "top-level keys": sorted(d)}
            if isinstance(d, dict)
            else d
            for d in docs
        ]
        self.add(
            group,
            "swagger.json: version and top-level keys",
            "GET /swagger.json",
            [self._synthetic(v) for v in top],
        )
        for path, method, keys in (
            (f"/v2/models/{model}/predict/", "post", ("parameters", "produces")),
            (f"/v2/models/{model}/train/", "post", ("parameters",)),
        ):
            parts = []
            for doc in docs:
                op = (
                    doc.get("paths", {}).get(path, {}).get(method)
                    if isinstance(doc, dict)
                    else None
                )
                if not isinstance(op, dict):
                    parts.append({"<missing>": f"no {method} {path}"})
                    continue
                picked: dict[str, Any] = {k: op.get(k) for k in keys}
                if isinstance(picked.get("parameters"), list):
                    picked["parameters"] = [
                        {k: v for k, v in p.items() if k != "description"}
                        for p in picked["parameters"]
                        if isinstance(p, dict)
                    ]
                parts.append(picked)
            self.add(
                group,
                f"swagger.json: {method.upper()} {path} ({', '.join(keys)})",
                "GET /swagger.json (descriptions left out)",
                [self._synthetic(v) for v in parts],
            )

    def _synthetic(self, value: Any) -> Answer:
        value = self.norm.json(value)
        return Answer("-", "-", {}, json.dumps(value), value, True)


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def _cell(text: str) -> str:
    if len(text) > BODY_LIMIT:
        text = text[:BODY_LIMIT] + f"... ({len(text)} chars)"
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")
    text = text.replace("\r", "").replace("\n", "<br>")
    return f"`{text}`" if text else ""


def render(rows: Sequence[Row], header: Sequence[str], problems: Sequence[str]) -> str:
    """The report, in Markdown (also readable as plain text)."""
    out = ["# DEEPaaS 2.6.0 vs ours", "", *header, ""]
    if problems:
        out += ["## Problems", "", *(f"- {p}" for p in problems), ""]
    counts: dict[str, int] = {}
    for row in rows:
        key = row.verdict.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    out += [
        "## Summary",
        "",
        ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
        "",
        "| # | model | request | verdict |",
        "|---|---|---|---|",
    ]
    for number, row in enumerate(rows, 1):
        out.append(f"| {number} | {row.group} | {_cell(row.title)} | {row.verdict} |")
    out += ["", "## Details", ""]
    for number, row in enumerate(rows, 1):
        ref, ours = row.answers
        out += [
            f"### {number}. [{row.group}] {row.title}: {row.verdict}",
            "",
            f"Request: {_cell(row.request)}",
            "",
            f"| | {SIDES[0]} | {SIDES[1]} |",
            "|---|---|---|",
        ]
        fields = [
            ("status", ref.status, ours.status),
            ("content-type", ref.content_type, ours.content_type),
            (
                "headers",
                "; ".join(f"{k}: {v}" for k, v in ref.headers.items()),
                "; ".join(f"{k}: {v}" for k, v in ours.headers.items()),
            ),
            ("body", ref.body, ours.body),
        ]
        for name, left, right in fields:
            if left == right:
                out.append(f"| {name} | {_cell(left)} | (same) |")
            else:
                out.append(f"| {name} | {_cell(left)} | {_cell(right)} |")
        out.append("")
    return "\n".join(out) + "\n"


def _version(venv: Path) -> str:
    python = venv / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('deepaas'))"
    try:
        done = subprocess.run(
            [str(python), "-I", "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    return done.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print (and optionally write) the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ref-venv",
        type=Path,
        required=True,
        help="virtual environment with deepaas 2.6.0 and the fixtures",
    )
    parser.add_argument(
        "--ours-venv",
        type=Path,
        required=True,
        help="virtual environment with this deepaas and the fixtures",
    )
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    parser.add_argument(
        "--models",
        default="legacy,static",
        help="comma-separated models to compare (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        help="seconds allowed for each request (default: %(default)s)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=90.0,
        help="seconds allowed for a server to start (default: %(default)s)",
    )
    options = parser.parse_args(argv)
    venvs = (options.ref_venv.absolute(), options.ours_venv.absolute())
    norm = Normaliser()
    comparison = Comparison(norm, options.timeout)
    problems: list[str] = []
    header = [
        f"- {SIDES[0]}: `{venvs[0]}` (deepaas {_version(venvs[0])})",
        f"- {SIDES[1]}: `{venvs[1]}` (deepaas {_version(venvs[1])})",
        f"- run on {time.strftime('%Y-%m-%d %H:%M:%S')}; volatile parts normalised "
        "(`<uuid>`, `<date>`, `<duration>`, `<seconds>`, `<tmp>`, `<tmpname>`, "
        "`<port>`)",
    ]
    makers: dict[str, Callable[[], list[Req]]] = {
        "legacy": legacy_requests,
        "static": static_requests,
    }
    with tempfile.TemporaryDirectory(prefix="compare-2x-") as workdir:
        for model in [m.strip() for m in options.models.split(",") if m.strip()]:
            print(f"== {model}: starting both servers", file=sys.stderr, flush=True)
            try:
                with servers(
                    venvs, model, Path(workdir), options.start_timeout
                ) as pair:
                    reqs = common_requests(model) + makers.get(model, list)()
                    comparison.run(model, pair, reqs)
                    comparison.training(model, pair, model)
                    comparison.swagger(model, pair, model)
            except Exception as err:  # a report: note it and go on
                problems.append(f"{model}: {type(err).__name__}: {err}")
    report = render(comparison.rows, header, problems)
    print(report)
    if options.markdown:
        try:
            options.markdown.write_text(report, encoding="utf-8")
        except OSError as err:
            print(f"cannot write {options.markdown}: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
