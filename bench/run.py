#!/usr/bin/env python3
"""Benchmark deepaas against deepaas 2.6.0 and a bare aiohttp server.

Python standard library only; Linux (reads /proc); needs ``wrk`` on PATH.

For every rep, for every selected target (workload x system), it:

1. starts the server in its own process group, on a free 127.0.0.1 port, with a
   private working directory and TMPDIR and one BLAS thread;
2. times process start -> first HTTP 200 on ``GET /v2/models/``;
3. checks correctness: requests with unique tokens, sent from many threads,
   must each come back 200 with their own answer;
4. runs ``wrk -t1 -c{C} -d{N}s --latency`` at each concurrency, then checks
   correctness again;
5. samples the summed RSS of the server's process tree from /proc all along,
   and counts the files left in the server's TMPDIR;
6. stops the server: SIGINT, then SIGTERM, then SIGKILL to its process group.

Reps are interleaved (rep 1 of every target, then rep 2...) and the table shows
medians.  Probes (200 MB upload, predict during training, 50 trainings) run
once each after the load targets.  See README.md next to this file.
"""

import argparse
import contextlib
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LUA = os.path.join(HERE, "lua", "report.lua")
RAW_SERVER = os.path.join(HERE, "servers", "raw_aiohttp.py")
PAGE = os.sysconf("SC_PAGE_SIZE")
HOST = "127.0.0.1"
READY = "/v2/models/"
SERVER_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}
WORKLOADS = ("echo", "echo-process", "mlp", "mlp-batch", "upload")
SYSTEMS = ("raw", "ours", "2.6.0")
# Variants: the requests and model of their base workload, served by "ours" only
# with other options (variant_argv); compared with the base's raw and 2.6.0.
VARIANTS = {"echo-process": "echo", "mlp-batch": "mlp"}
UPLOAD_SIZE = 128 * 1024
BOUNDARY = "deepaasbenchboundary7d3f"


def log(msg):
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- /proc helpers
def read_text(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return None


def rss_bytes(pid):
    raw = read_text(f"/proc/{pid}/stat")
    if raw is None:
        return 0
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[21]) * PAGE  # field 24: rss in pages


def process_tree(root):
    """The PIDs of ``root`` and all its descendants (bounded walk)."""
    seen, todo = [], [root]
    while todo and len(seen) < 10000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            kids = read_text(f"/proc/{pid}/task/{tid}/children") or ""
            todo.extend(int(k) for k in kids.split())
    return seen


def dir_usage(path):
    """(number of files, total bytes) under ``path``."""
    count = size = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            count += 1
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(base, name)).st_size
    return count, size


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ HTTP client
def http_call(port, method, path, body=None, ctype=None, timeout=30.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    headers = {}
    if ctype:
        headers["Content-Type"] = ctype
    if body is None and method == "POST":
        headers["Content-Length"] = "0"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def find_key(obj, key):
    """First value of ``key`` anywhere in a decoded JSON document."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for item in obj:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


def multipart(data, field="file"):
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="blob.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + (f"\r\n--{BOUNDARY}--\r\n").encode()


MULTIPART_CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def upload_bytes(token, size=UPLOAD_SIZE):
    """Content unique to ``token``: the token, then seeded filler."""
    head = token.encode()
    return head + random.Random(token).randbytes(size - len(head))


def mlp_sample(token):
    rng = random.Random(token)
    return json.dumps([round(rng.uniform(-2, 2), 4) for _ in range(64)])


def build_request(workload, token):
    """(method, path, body, content type) of one request carrying ``token``."""
    if workload == "echo":
        q = urllib.parse.quote(token, safe="")
        return "POST", f"/v2/models/echo/predict/?text={q}", None, None
    if workload == "mlp":
        q = urllib.parse.quote(mlp_sample(token), safe="")
        return "POST", f"/v2/models/mlp/predict/?data={q}", None, None
    body = multipart(upload_bytes(token))
    return "POST", "/v2/models/upload/predict/", body, MULTIPART_CTYPE


def check_answer(workload, token, status, data):
    """None if the answer is right for ``token``, else why not."""
    if status != 200:
        return f"HTTP {status} {data[:160]!r}"
    try:
        doc = json.loads(data)
    except ValueError:
        return f"not JSON: {data[:160]!r}"
    if workload == "echo":
        return None if find_key(doc, "echo") == token else f"wrong echo {data[:160]!r}"
    if workload == "upload":
        want = hashlib.sha256(upload_bytes(token)).hexdigest()
        return None if find_key(doc, "sha256") == want else f"wrong sha {data[:160]!r}"
    probs = find_key(doc, "probabilities")
    try:
        if len(probs[0]) == 10 and abs(sum(probs[0]) - 1) < 1e-3:
            return None
    except (TypeError, IndexError):
        pass
    return f"bad mlp answer {data[:160]!r}"


def correctness(port, workload, n=64, threads=16):
    """Send ``n`` requests with unique tokens from ``threads`` threads.

    echo and upload answers carry their token.  An mlp answer cannot, so every
    mlp sample is sent twice, in shuffled order: both answers must match, and
    answers to different samples must differ.
    """
    salt = f"{random.getrandbits(32):08x}"
    tokens = [f"chk-{salt}-{i:03d}" for i in range(n)]
    jobs = tokens + tokens if workload == "mlp" else list(tokens)
    random.shuffle(jobs)

    def one(token):
        method, path, body, ctype = build_request(workload, token)
        try:
            status, data = http_call(port, method, path, body, ctype)
        except (OSError, http.client.HTTPException) as exc:
            return token, f"client error {exc!r}", b""
        return token, check_answer(workload, token, status, data), data

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one, jobs))
    failures = [why for _t, why, _d in results if why]
    if workload == "mlp" and not failures:
        answers = {}
        for token, _why, data in results:
            probs = json.dumps(find_key(json.loads(data), "probabilities"))
            if answers.setdefault(token, probs) != probs:
                failures.append("two answers differ for one mlp sample")
        if len(set(answers.values())) != len(answers):
            failures.append("different mlp samples got the same answer")
    return {"sent": len(jobs), "failed": len(failures), "first": failures[:1]}


# ---------------------------------------------------------------------- servers
class Server:
    """One server process group, with a sampler of the tree's RSS."""

    def __init__(self, label, argv, workdir, env_extra=None):
        self.label, self.argv = label, argv
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.workdir = workdir
        self.tmpdir = os.path.join(workdir, "tmp")
        os.makedirs(self.tmpdir, exist_ok=True)
        self.logpath = os.path.join(workdir, "server.log")
        self.env = dict(os.environ, TMPDIR=self.tmpdir, **SERVER_ENV)
        self.env.update(env_extra or {})
        self.proc = None
        self.pids = set()
        self.peak_rss = 0
        self.last_rss = 0
        self._stop = threading.Event()
        self._thread = None

    def start(self, timeout=60.0):
        """Start; return the seconds to the first 200 on the ready path."""
        with open(self.logpath, "ab") as logfh:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=logfh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        last = "no answer"
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.proc.returncode}; "
                    f"log: {self.log_tail()}"
                )
            try:
                status, _ = http_call(self.port, "GET", READY, timeout=2)
                if status == 200:
                    return time.monotonic() - t0
                last = f"HTTP {status}"
            except (OSError, http.client.HTTPException) as exc:
                last = repr(exc)
            time.sleep(0.02)
        raise RuntimeError(f"{self.label} not ready after {timeout}s ({last})")

    def log_tail(self, n=1500):
        return (read_text(self.logpath) or "")[-n:]

    def tree(self):
        return process_tree(self.proc.pid) if self.proc else []

    def rss(self):
        return sum(rss_bytes(p) for p in self.tree())

    def _sample(self):
        while not self._stop.is_set():
            pids = self.tree()
            self.pids.update(pids)
            rss = sum(rss_bytes(p) for p in pids)
            self.last_rss = rss
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(0.1)

    def reset_peak(self):
        self.peak_rss = self.rss()

    def stop(self):
        """SIGINT, then SIGTERM, then SIGKILL to the process group (bounded)."""
        if self.proc is None:
            return None
        self.pids.update(self.tree())
        pgid = self.proc.pid
        used = None
        for sig, wait in (
            (signal.SIGINT, 10),
            (signal.SIGTERM, 5),
            (signal.SIGKILL, 5),
        ):
            if self._group_gone(pgid):
                break
            used = sig.name
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and not self._group_gone(pgid):
                time.sleep(0.05)
        # Children that left the group (setsid) are ended by their own PID.
        for pid in self.pids:
            if pid != pgid and self._alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        return used

    def _alive(self, pid):
        raw = read_text(f"/proc/{pid}/stat")
        return raw is not None and not raw[raw.rfind(")") + 2 :].startswith("Z")

    def _group_gone(self, pgid):
        self.proc.poll()
        if self.proc.returncode is None:
            return False
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        # Only zombies may be left: check the known members.
        return not any(self._alive(p) for p in self.pids)


def server_argv(system, model, args):
    if system == "raw":
        return [
            os.path.join(args.raw_venv, "bin", "python"),
            RAW_SERVER,
            "--port",
            "{port}",
        ]
    venv = args.ours_venv if system == "ours" else args.ref_venv
    return [
        os.path.join(venv, "bin", "deepaas-run"),
        "--listen-ip",
        HOST,
        "--listen-port",
        "{port}",
        "--model-name",
        model,
        *(args.ours_args.split() if system == "ours" else ()),
    ]


# -------------------------------------------------------------------------- wrk
def run_wrk(port, workload, conc, duration, workdir):
    method, path, body, ctype = build_request(workload, "hello-bench")
    body_path = ""
    if body is not None:
        body_path = os.path.join(workdir, "body.bin")
        with open(body_path, "wb") as fh:
            fh.write(body)
    argv = [
        "wrk",
        "-t1",
        f"-c{conc}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        LUA,
        f"http://{HOST}:{port}{path}",
    ]
    env = dict(
        os.environ, BENCH_METHOD=method, BENCH_BODY=body_path, BENCH_CTYPE=ctype or ""
    )
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=duration + 60
    )
    m = re.search(r"^BENCH_RESULT (\{.*\})$", proc.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed: {proc.stdout[-400:]} {proc.stderr[-400:]}")
    res = json.loads(m.group(1))
    secs = res["duration_us"] / 1e6 or 1.0
    errors = sum(res[k] for k in ("status", "connect", "read", "write", "timeout"))
    return {
        "rps": res["requests"] / secs,
        "p50_ms": res["p50_us"] / 1000.0,
        "p99_ms": res["p99_us"] / 1000.0,
        "errors": errors,
        "requests": res["requests"],
    }


# ----------------------------------------------------------------- load targets
REFUSED = re.compile(
    # Label values may hold braces (route templates): match up to the value.
    r'^deepaas_http_requests_total\{.*status="503".*\} (\S+)$',
    re.M,
)


def refused_count(port):
    """How many requests deepaas has refused with 503 (its bounded queue) so far."""
    status, data = http_call(port, "GET", "/metrics")
    if status != 200:
        return 0
    return sum(float(v) for v in REFUSED.findall(data.decode()))


def discount_refused(phase, refused):
    """Count 503 refusals apart: neither served requests nor errors."""
    refused = int(refused)
    phase["refused"] = refused
    phase["errors"] = max(0, phase["errors"] - refused)
    phase["rps"] = max(0.0, phase["rps"] * (1 - refused / max(phase["requests"], 1)))


def base(workload):
    """The workload whose requests and model a variant uses."""
    return VARIANTS.get(workload, workload)


# The mlp workload without batching is to use both cores (its target is at
# least the speed of raw aiohttp computing inline, on one core): ours and
# 2.6.0 both get two prediction workers.
MLP_WORKERS = 2


def variant_argv(workload, system, args):
    """Extra deepaas-run options of a workload variant."""
    if system == "raw":
        return []
    if workload == "mlp":
        return ["--workers", str(MLP_WORKERS)]
    if workload == "echo-process":
        return ["--executor", "process"]
    if workload == "mlp-batch":
        return [
            "--max-batch-size",
            str(args.batch_size),
            "--max-batch-delay-ms",
            str(args.batch_delay_ms),
        ]
    return []


def run_target(workload, system, args, root):
    label = f"{workload}/{system}"
    workdir = tempfile.mkdtemp(prefix=re.sub(r"\W", "_", label) + "-", dir=root)
    argv = server_argv(system, base(workload), args) + variant_argv(
        workload, system, args
    )
    srv = Server(label, argv, workdir)
    out = {"target": label, "workload": workload, "system": system, "phases": {}}
    workload = base(workload)
    try:
        out["startup_s"] = srv.start()
        chk = correctness(srv.port, workload)
        out["check"] = chk
        if chk["failed"]:
            log(f"{label} FAILED the correctness check: {chk['first']}")
            return out
        run_wrk(srv.port, workload, 4, 1, workdir)  # warm-up
        srv.reset_peak()
        for conc in args.concurrency:
            refused = refused_count(srv.port) if system == "ours" else None
            phase = run_wrk(srv.port, workload, conc, args.duration, workdir)
            if refused is not None:
                discount_refused(phase, refused_count(srv.port) - refused)
            out["phases"][conc] = phase
            log(f"{label} c={conc}: {phase['rps']:.0f} req/s")
        out["check_after"] = correctness(srv.port, workload, n=16, threads=8)
        out["peak_rss_mib"] = srv.peak_rss / 2**20
        out["tmp_files"], out["tmp_bytes"] = dir_usage(srv.tmpdir)
    except Exception as exc:
        out["error"] = repr(exc)
        log(f"{label} error: {exc!r}; server log: {srv.log_tail(600)}")
    finally:
        out["stop_signal"] = srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# ----------------------------------------------------------------------- probes
def stream_upload(port, size, timeout=300):
    """POST a ``size``-byte multipart upload generated on the fly."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = (f"\r\n--{BOUNDARY}--\r\n").encode()
    block = random.Random(1).randbytes(1 << 20)
    digest = hashlib.sha256()

    def body():
        yield head
        left = size
        while left > 0:
            chunk = block[: min(left, len(block))]
            digest.update(chunk)
            left -= len(chunk)
            yield chunk
        yield tail

    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.putrequest("POST", "/v2/models/upload/predict/")
        conn.putheader("Content-Type", MULTIPART_CTYPE)
        conn.putheader("Content-Length", str(len(head) + size + len(tail)))
        conn.endheaders()
        for chunk in body():
            conn.send(chunk)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    ok = (
        resp.status == 200
        and find_key(json.loads(data), "sha256") == digest.hexdigest()
    )
    return resp.status, ok, data[:160]


def probe_big_upload(system, args, root):
    out = {"probe": "200 MB upload", "system": system}
    with probe_server(
        "big_upload", "upload-200mb", "upload", system, args, root, out
    ) as srv:
        time.sleep(0.3)
        before = srv.rss()
        srv.reset_peak()
        t0 = time.monotonic()
        status, ok, head = stream_upload(srv.port, 200 * 2**20)
        out["seconds"] = time.monotonic() - t0
        time.sleep(0.3)
        out["status"], out["ok"] = status, ok
        if not ok:
            out["answer"] = head.decode("utf-8", "replace")
        out["rss_growth_mib"] = (srv.peak_rss - before) / 2**20
        out["tmp_files"], out["tmp_bytes"] = dir_usage(srv.tmpdir)
    return out


@contextlib.contextmanager
def probe_server(prefix, label, model, system, args, root, out):
    """A started server for a probe, always stopped; a failure goes in ``out``."""
    workdir = tempfile.mkdtemp(prefix=f"{prefix}-", dir=root)
    srv = Server(f"{label}/{system}", server_argv(system, model, args), workdir)
    try:
        srv.start()
        yield srv
    except Exception as exc:
        out["error"] = repr(exc)
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start_training(port, model, seconds):
    path = f"/v2/models/{model}/train/?seconds={seconds}"
    status, data = http_call(port, "POST", path)
    if status != 200:
        raise RuntimeError(f"train POST: HTTP {status} {data[:160]!r}")
    return json.loads(data)["uuid"]


def training_status(port, model, uuid):
    status, data = http_call(port, "GET", f"/v2/models/{model}/train/{uuid}")
    return json.loads(data).get("status") if status == 200 else f"HTTP {status}"


def wait_trainings(port, model, uuids, limit):
    """Poll until every training has ended or ``limit`` seconds; return statuses."""
    final = {}
    deadline = time.monotonic() + limit
    while len(final) < len(uuids) and time.monotonic() < deadline:
        for uuid in uuids:
            if uuid not in final:
                st = training_status(port, model, uuid)
                if st in ("done", "error", "cancelled", "interrupted") or "HTTP" in st:
                    final[uuid] = st
        time.sleep(0.05)
    return [final.get(u, "unfinished") for u in uuids]


def predict_latencies(port, workload, n, spacing=0.0):
    times = []
    for i in range(n):
        method, path, body, ctype = build_request(workload, f"lat-{i}")
        t0 = time.monotonic()
        status, data = http_call(port, method, path, body, ctype)
        times.append(time.monotonic() - t0)
        if check_answer(workload, f"lat-{i}", status, data):
            raise RuntimeError(f"bad answer during the probe: {data[:160]!r}")
        time.sleep(spacing)
    return times


def probe_train_predict(system, args, root):
    """mlp predict latency, idle and while a 3 s computing training runs."""
    out = {"probe": "predict during training", "system": system}
    with probe_server(
        "train_predict", "train-predict", "mlp", system, args, root, out
    ) as srv:
        idle = predict_latencies(srv.port, "mlp", 20)
        uuid = start_training(srv.port, "mlp", 3)
        time.sleep(0.3)
        busy = predict_latencies(srv.port, "mlp", 10, spacing=0.1)
        out["training"] = wait_trainings(srv.port, "mlp", [uuid], 60)[0]
        out["idle_p50_ms"] = statistics.median(idle) * 1000
        out["busy_p50_ms"] = statistics.median(busy) * 1000
        out["busy_max_ms"] = max(busy) * 1000
    return out


def probe_many_trainings(system, args, root, count=50):
    """Start ``count`` 0.1 s trainings of ``sleeper`` at once; time them all."""
    out = {"probe": f"{count} short trainings", "system": system}
    with probe_server(
        "trainings", "trainings", "sleeper", system, args, root, out
    ) as srv:
        time.sleep(0.3)
        before = srv.rss()
        nproc_before = len(srv.tree())
        srv.reset_peak()
        t0 = time.monotonic()
        uuids = [start_training(srv.port, "sleeper", 0.1) for _ in range(count)]
        statuses = wait_trainings(srv.port, "sleeper", uuids, 180)
        out["seconds"] = time.monotonic() - t0
        out["done"] = statuses.count("done")
        out["other"] = sorted({s for s in statuses if s != "done"})
        out["rss_growth_mib"] = (srv.peak_rss - before) / 2**20
        time.sleep(1.0)
        out["extra_processes_after"] = len(srv.tree()) - nproc_before
    return out


def send_and_abandon(port, path, after):
    """Send a POST to ``path`` and close the connection ``after`` seconds later."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n"
        sock.sendall(head.encode() + b"\r\n")
        time.sleep(after)


def probe_abandoned_calls(system, args, root, count=5):
    """Calls whose clients hang up while they wait behind a 2 s call."""
    out = {"probe": "client gives up while queued", "system": system}
    with probe_server(
        "abandoned", "abandoned", "sleeper", system, args, root, out
    ) as srv:
        marker = os.path.join(srv.workdir, "computed.txt")
        q = urllib.parse.quote(marker, safe="")
        busy = threading.Thread(
            target=http_call,
            args=(srv.port, "POST", "/v2/models/sleeper/predict/?seconds=2"),
        )
        busy.start()
        time.sleep(0.3)
        with ThreadPoolExecutor(count) as pool:
            list(
                pool.map(
                    lambda i: send_and_abandon(
                        srv.port,
                        f"/v2/models/sleeper/predict/?text=gone{i}&marker={q}",
                        0.3,
                    ),
                    range(count),
                )
            )
        busy.join(30)
        time.sleep(1.0)
        computed = (read_text(marker) or "").split()
        out["sent"], out["computed"] = count, len(computed)
        status, _ = http_call(srv.port, "POST", "/v2/models/sleeper/predict/?text=ok")
        out["after"] = status
    return out


PROBES = (
    ("upload-200mb", probe_big_upload, SYSTEMS),
    ("abandoned", probe_abandoned_calls, ("ours", "2.6.0")),
    ("train-predict", probe_train_predict, ("ours", "2.6.0")),
    ("train-50", probe_many_trainings, ("ours", "2.6.0")),
)


# ------------------------------------------------------------------------ venvs
def ensure_venv(path, specs, python):
    """Create ``path`` with ``specs`` installed unless it already has a python."""
    if os.path.exists(os.path.join(path, "bin", "python")):
        return
    log(f"building {path} ({' '.join(specs)})")
    subprocess.run([python, "-m", "venv", path], check=True, timeout=300)
    pip = [os.path.join(path, "bin", "pip"), "install", "-q"]
    subprocess.run(pip + specs, check=True, timeout=1800)


def venv_version(venv, dist):
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    try:
        return subprocess.run(
            [os.path.join(venv, "bin", "python"), "-I", "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info(args):
    cpu = "?"
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = re.search(r"MemTotal:\s+(\d+)", read_text("/proc/meminfo") or "")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "cpu": f"{os.cpu_count() or 0} x {cpu}",
        "memory": "%.0f GiB" % (int(mem.group(1)) / 2**20) if mem else "?",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout + wrk.stderr).split("\n")[0].split(" [")[0],
        "ours": "deepaas {}, aiohttp {}".format(
            venv_version(args.ours_venv, "deepaas"),
            venv_version(args.ours_venv, "aiohttp"),
        ),
        "2.6.0": "deepaas {}, aiohttp {}".format(
            venv_version(args.ref_venv, "deepaas"),
            venv_version(args.ref_venv, "aiohttp"),
        ),
        "raw": "aiohttp " + venv_version(args.raw_venv, "aiohttp"),
    }


# ---------------------------------------------------------------------- report
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec="%.0f"):
    return "-" if value is None else spec % value


def summarize(results, args):
    """Rows of the load table: medians over reps, ratios to raw and 2.6.0."""
    by = {}
    for r in results:
        by.setdefault((r["workload"], r["system"]), []).append(r)
    med = {}
    for (wl, sysname), runs in by.items():
        for conc in args.concurrency:
            phases = [r["phases"].get(conc) for r in runs if conc in r["phases"]]
            if not phases:
                continue
            med[wl, sysname, conc] = {
                "rps": median([p["rps"] for p in phases]),
                "p50": median([p["p50_ms"] for p in phases]),
                "p99": median([p["p99_ms"] for p in phases]),
                "errors": sum(p["errors"] for p in phases),
                "refused": sum(p.get("refused", 0) for p in phases),
                "rss": median([r.get("peak_rss_mib") for r in runs]),
                "startup": median([r.get("startup_s") for r in runs]),
                "tmp": median([r.get("tmp_files") for r in runs]),
            }
    rows = []
    for wl in WORKLOADS:
        for sysname in SYSTEMS:
            runs = by.get((wl, sysname))
            if not runs:
                continue
            failed = [
                r for r in runs if r.get("error") or r.get("check", {}).get("failed")
            ]
            if failed and not any((wl, sysname, c) in med for c in args.concurrency):
                why = failed[0].get("error") or failed[0]["check"]["first"]
                rows.append([wl, sysname, "-", f"FAILED: {str(why)[:80]}"] + [""] * 10)
                continue
            for conc in args.concurrency:
                m = med.get((wl, sysname, conc))
                if not m:
                    continue
                raw = med.get((base(wl), "raw", conc), {}).get("rps")
                ref = med.get((base(wl), "2.6.0", conc), {}).get("rps")
                rows.append(
                    [
                        wl,
                        sysname,
                        str(conc),
                        fmt(m["rps"]),
                        fmt(m["p50"], "%.2f"),
                        fmt(m["p99"], "%.2f"),
                        str(m["errors"]),
                        str(m["refused"]),
                        fmt(m["rss"]),
                        fmt(m["startup"], "%.2f"),
                        fmt(m["tmp"]),
                        fmt(m["rps"] / raw if raw else None, "%.2f"),
                        fmt(m["rps"] / ref if ref else None, "%.2f"),
                    ]
                )
    return rows


LOAD_HEADER = [
    "workload",
    "system",
    "c",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "503",
    "peak RSS MiB",
    "startup s",
    "tmp files left",
    "vs raw",
    "vs 2.6.0",
]


def probe_rows(probes):
    rows = []
    for p in probes:
        if p.get("error"):
            detail = f"ERROR {p['error'][:100]}"
        elif p["probe"] == "200 MB upload":
            answer = "sha256 right" if p["ok"] else f"wrong answer {p.get('answer')}"
            detail = (
                f"HTTP {p['status']}, {answer}, {p['seconds']:.1f} s, "
                f"RSS +{p['rss_growth_mib']:.0f} MiB, {p['tmp_files']} tmp files left"
            )
        elif p["probe"] == "client gives up while queued":
            detail = (
                f"{p['computed']} of {p['sent']} abandoned calls computed; "
                f"next call HTTP {p['after']}"
            )
        elif p["probe"] == "predict during training":
            detail = (
                f"idle p50 {p['idle_p50_ms']:.1f} ms; during training "
                f"p50 {p['busy_p50_ms']:.1f} ms, max {p['busy_max_ms']:.1f} ms "
                f"(training {p['training']})"
            )
        else:
            also = f" (also {', '.join(p['other'])})" if p["other"] else ""
            detail = (
                f"{p['done']} done in {p['seconds']:.1f} s{also}, "
                f"RSS +{p['rss_growth_mib']:.0f} MiB, "
                f"{p['extra_processes_after']} extra processes after"
            )
        rows.append([p["probe"], p["system"], detail])
    return rows


def table(header, rows, markdown):
    if markdown:
        lines = ["| " + " | ".join(header) + " |"]
        numeric = [
            all(re.fullmatch(r"-?[\d.]+|-", r[i]) for r in rows)
            for i in range(len(header))
        ]
        lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))]
    out.append("  ".join("-" * w for w in widths))
    out += [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False))
        for r in rows
    ]
    return "\n".join(out)


def report(info, results, probes, args, markdown):
    parts = []
    meta = [
        f"date: {info['date']}",
        "machine: {}, {} RAM, Linux {}, Python {}, {}".format(
            info["cpu"], info["memory"], info["kernel"], info["python"], info["wrk"]
        ),
        "ours: {}; 2.6.0: {}; raw: {}".format(info["ours"], info["2.6.0"], info["raw"]),
        f"wrk -t1 -c{{{','.join(map(str, args.concurrency))}}} -d{args.duration}s "
        f"--latency, {args.reps} rep(s), medians",
    ]
    parts.append("\n".join(("* " + m) if markdown else m for m in meta))
    rows = summarize(results, args)
    if rows:
        parts.append(table(LOAD_HEADER, rows, markdown))
    prows = probe_rows(probes)
    if prows:
        parts.append(table(["probe", "system", "result"], prows, markdown))
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------------ main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours-venv", default=os.path.join(REPO, ".venv-bench-ours"))
    ap.add_argument("--ref-venv", default=os.path.join(REPO, ".venv-bench-ref"))
    ap.add_argument("--raw-venv", help="venv for the raw server (default: --ours-venv)")
    ap.add_argument(
        "--only", default="", help="regex on target names, e.g. 'echo|upload'"
    )
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    ap.add_argument("--concurrency", default="1,16,64,256")
    ap.add_argument("--no-probes", action="store_true")
    ap.add_argument(
        "--ours-args",
        default="",
        help="extra deepaas-run options for ours, e.g. '--event-loop asyncio'",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="--max-batch-size of the mlp-batch workload (ours only)",
    )
    ap.add_argument(
        "--batch-delay-ms",
        type=float,
        default=5.0,
        help="--max-batch-delay-ms of the mlp-batch workload",
    )
    ap.add_argument("--markdown", help="also write the tables as Markdown here")
    ap.add_argument("--json", help="also write the raw results as JSON here")
    args = ap.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    args.raw_venv = args.raw_venv or args.ours_venv
    for name in ("ours_venv", "ref_venv", "raw_venv"):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    if not 1 <= args.duration <= 600 or not 1 <= args.reps <= 20:
        ap.error("--duration must be 1..600 and --reps 1..20")
    return args


def main(argv=None):
    args = parse_args(argv)
    if sys.platform != "linux" or not shutil.which("wrk"):
        sys.exit("needs Linux and wrk on PATH")
    models = os.path.join(HERE, "models")
    py = sys.executable
    ensure_venv(args.ours_venv, ["-e", REPO, "-e", models], py)
    ensure_venv(args.ref_venv, ["deepaas==2.6.0", "-e", models], py)
    ensure_venv(args.raw_venv, ["aiohttp", "-e", models], py)
    only = re.compile(args.only)
    targets = [
        (wl, s)
        for wl in WORKLOADS
        for s in SYSTEMS
        if only.search(f"{wl}/{s}") and (wl not in VARIANTS or s == "ours")
    ]
    probes = []
    if not args.no_probes:
        probes = [
            (name, fn, s)
            for name, fn, systems in PROBES
            for s in systems
            if only.search(f"probe/{name}/{s}")
        ]
    if not targets and not probes:
        sys.exit(f"--only {args.only!r} selects nothing")
    info = machine_info(args)
    root = tempfile.mkdtemp(prefix="deepaas-bench-")
    results, probe_results = [], []
    try:
        for rep in range(args.reps):
            for wl, s in targets:
                log(f"rep {rep + 1}/{args.reps}: {wl}/{s}")
                results.append(run_target(wl, s, args, root))
        for name, fn, s in probes:
            log(f"probe {name}/{s}")
            probe_results.append(fn(s, args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(report(info, results, probe_results, args, markdown=False))
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(report(info, results, probe_results, args, markdown=True))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"info": info, "load": results, "probes": probe_results}, fh, indent=1
            )


if __name__ == "__main__":
    main()
