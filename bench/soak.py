#!/usr/bin/env python3
"""Soak test: many requests to one ``deepaas-run``, watching for leaks.

Starts ``deepaas-run`` (the deepaas of the Python running this script) on
127.0.0.1 with the ``echo`` and ``upload`` models of ``bench/models``, exposed
through a throwaway ``*.dist-info`` on ``PYTHONPATH`` (nothing is installed),
then sends ``--requests`` requests from ``--concurrency`` keep-alive
connections: JSON predictions to ``echo``, small multipart uploads to
``upload`` and GETs of the model list and metadata, checking every answer.

All along it samples the server's resident memory (``VmRSS`` in
``/proc/<pid>/status``), its open file descriptors (``/proc/<pid>/fd``) and the
files in its private ``TMPDIR``. It reports the figures at the end of the
warm-up and at the end, and passes when:

* every answer was right;
* resident memory grew by at most ``--max-rss-growth-mib`` after the warm-up;
* the open file descriptors are back to their number before the load;
* no upload is left in ``TMPDIR`` after the load, and ``TMPDIR`` is empty
  once the server has stopped (SIGTERM, exit status 0).

Linux only (reads ``/proc``); needs aiohttp (any environment with deepaas has
it). Exit status 0 when every check passes, 1 otherwise. See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import aiohttp

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS_DIR = os.path.join(HERE, "models")
ENTRY_POINTS = {
    "echo": "deepaas_bench_models.echo",
    "upload": "deepaas_bench_models.upload",
}
MIB = 1024 * 1024
UPLOAD_SIZE = 4096
SAMPLE_EVERY_S = 0.25


# ------------------------------------------------------------------ /proc probes
def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tmp_entries(path: str) -> tuple[int, int]:
    """(files, directories) under ``path``, not counting ``path`` itself."""
    files = dirs = 0
    for _, subdirs, names in os.walk(path):
        files += len(names)
        dirs += len(subdirs)
    return files, dirs


@dataclass
class Sample:
    t: float
    done: int
    rss: int
    fds: int
    tmp_files: int


@dataclass
class Report:
    requests: int
    concurrency: int
    warmup: int
    seconds: float = 0.0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    rss_before_mib: float = 0.0
    rss_warm_mib: float = 0.0
    rss_end_mib: float = 0.0
    rss_peak_after_warmup_mib: float = 0.0
    rss_growth_mib: float = 0.0
    fds_before: int = 0
    fds_warm: int = 0
    fds_peak: int = 0
    fds_end: int = 0
    tmp_files_peak: int = 0
    tmp_files_end: int = 0
    tmp_entries_after_stop: int = 0
    exit_status: int | None = None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(self.checks.values())


# ------------------------------------------------------------------ the server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_dist_info(site: str) -> None:
    """What stevedore needs to find the bench models: a dist-info, no install."""
    dist_info = os.path.join(site, "deepaas_bench_models-0.1.0.dist-info")
    os.makedirs(dist_info)
    with open(os.path.join(dist_info, "METADATA"), "w") as meta:
        meta.write("Metadata-Version: 2.1\nName: deepaas-bench-models\n")
        meta.write("Version: 0.1.0\n")
    with open(os.path.join(dist_info, "entry_points.txt"), "w") as eps:
        eps.write("[deepaas.v2.model]\n")
        for name, target in ENTRY_POINTS.items():
            eps.write(f"{name} = {target}\n")


class Server:
    def __init__(self, workdir: str, port: int, extra_args: list[str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.tmpdir = os.path.join(workdir, "tmp")
        os.makedirs(self.tmpdir)
        site = os.path.join(workdir, "site")
        write_dist_info(site)
        env = dict(os.environ)
        env.pop("DEEPAAS_V2_MODEL", None)
        env.update(
            PYTHONPATH=os.pathsep.join(
                [site, MODELS_DIR, *filter(None, [env.get("PYTHONPATH")])]
            ),
            TMPDIR=self.tmpdir,
            XDG_STATE_HOME=os.path.join(workdir, "state"),
            XDG_CACHE_HOME=os.path.join(workdir, "cache"),
            PYTHONUNBUFFERED="1",
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
        )
        self.log_path = os.path.join(workdir, "server.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deepaas.cmd.run",
                    "--model-name",
                    ",".join(ENTRY_POINTS),
                    "--listen-ip",
                    "127.0.0.1",
                    "--listen-port",
                    str(port),
                    # The access log would measure the terminal, not the server.
                    "--log-level",
                    "WARNING",
                    *extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"deepaas-run exited with {self.proc.returncode}:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(self.url + "/v2/models/") as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError("deepaas-run did not start:\n" + self.log_tail())
            await asyncio.sleep(0.1)

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, as an operator would; SIGKILL if it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None


# ------------------------------------------------------------------ the load
class Load:
    """Sends the requests and checks each answer."""

    def __init__(self, server: Server, total: int, report: Report) -> None:
        self.server = server
        self.total = total
        self.report = report
        self.issued = 0
        self.done = 0

    def _fail(self, what: str) -> None:
        self.report.errors += 1
        if len(self.report.first_errors) < 10:
            self.report.first_errors.append(what)

    async def worker(self, session: aiohttp.ClientSession) -> None:
        url = self.server.url
        while self.issued < self.total:
            i = self.issued
            self.issued += 1
            kind = i % 10
            try:
                if kind < 6:
                    await self._echo(session, url, i)
                elif kind < 8:
                    await self._upload(session, url, i)
                else:
                    path = "/v2/models/" if kind == 8 else "/v2/models/echo/"
                    async with session.get(url + path) as resp:
                        await resp.read()
                        if resp.status != 200:
                            self._fail(f"GET {path}: {resp.status}")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self._fail(f"request {i}: {type(exc).__name__}: {exc}")
            self.done += 1

    async def _echo(self, session: aiohttp.ClientSession, url: str, i: int) -> None:
        token = f"soak-{i}"
        async with session.post(
            url + "/v2/models/echo/predict/", json={"text": token}
        ) as resp:
            body = await resp.json(content_type=None)
        if resp.status != 200 or body.get("predictions") != {"echo": token}:
            self._fail(f"echo {i}: {resp.status} {str(body)[:200]}")

    async def _upload(self, session: aiohttp.ClientSession, url: str, i: int) -> None:
        content = (f"soak-{i}-".encode() * UPLOAD_SIZE)[:UPLOAD_SIZE]
        form = aiohttp.FormData()
        form.add_field(
            "file", content, filename=f"f{i}.bin", content_type="application/x-soak"
        )
        async with session.post(url + "/v2/models/upload/predict/", data=form) as resp:
            body = await resp.json(content_type=None)
        want = {"size": UPLOAD_SIZE, "sha256": hashlib.sha256(content).hexdigest()}
        if resp.status != 200 or body.get("predictions") != want:
            self._fail(f"upload {i}: {resp.status} {str(body)[:200]}")


async def sample_until(
    stop: asyncio.Event, pid: int, load: Load, tmpdir: str, samples: list[Sample]
) -> None:
    start = time.monotonic()
    while not stop.is_set():
        samples.append(
            Sample(
                t=time.monotonic() - start,
                done=load.done,
                rss=rss_bytes(pid),
                fds=open_fds(pid),
                tmp_files=tmp_entries(tmpdir)[0],
            )
        )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


async def settle_fds(pid: int, target: int, timeout: float) -> int:
    """The fd count once it is back to ``target``, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (fds := open_fds(pid)) > target and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return fds


async def soak(args: argparse.Namespace, workdir: str) -> Report:
    warmup = min(args.warmup, args.requests // 2)
    report = Report(requests=args.requests, concurrency=args.concurrency, warmup=warmup)
    server = Server(workdir, free_port(), args.server_args)
    pid = server.proc.pid
    try:
        async with aiohttp.ClientSession() as probe:
            await server.wait_ready(probe, args.startup_timeout)
        await asyncio.sleep(0.5)
        report.fds_before = open_fds(pid)
        report.rss_before_mib = rss_bytes(pid) / MIB

        load = Load(server, args.requests, report)
        samples: list[Sample] = []
        stop = asyncio.Event()
        sampler = asyncio.ensure_future(
            sample_until(stop, pid, load, server.tmpdir, samples)
        )
        started = time.monotonic()
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        timeout = aiohttp.ClientTimeout(total=args.request_timeout)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout
        ) as session:
            workers = [load.worker(session) for _ in range(args.concurrency)]
            await asyncio.gather(*workers)
        report.seconds = time.monotonic() - started
        stop.set()
        await sampler

        after = [s for s in samples if s.done >= warmup]
        warm = after[0] if after else samples[-1]
        report.rss_warm_mib = warm.rss / MIB
        report.fds_warm = warm.fds
        report.rss_peak_after_warmup_mib = max(s.rss for s in after or samples) / MIB
        report.fds_peak = max(s.fds for s in samples)
        report.tmp_files_peak = max(s.tmp_files for s in samples)
        # The client has closed its connections: the server's fds must follow.
        report.fds_end = await settle_fds(pid, report.fds_before, 5.0)
        report.rss_end_mib = rss_bytes(pid) / MIB
        report.rss_growth_mib = report.rss_end_mib - report.rss_warm_mib
        files, dirs = tmp_entries(server.tmpdir)
        # One directory is expected while serving: the server's own scratch one.
        report.tmp_files_end = files + max(0, dirs - 1)
    finally:
        report.exit_status = server.stop(args.stop_timeout)
    report.tmp_entries_after_stop = sum(tmp_entries(server.tmpdir))
    report.checks = {
        "no errors": report.errors == 0,
        f"RSS growth after warm-up <= {args.max_rss_growth_mib:g} MiB": (
            report.rss_growth_mib <= args.max_rss_growth_mib
        ),
        "open fds back to the count before the load": (
            report.fds_end <= report.fds_before
        ),
        "no temporary files left after the load": report.tmp_files_end == 0,
        "stopped with SIGTERM, exit status 0": report.exit_status == 0,
        "TMPDIR empty after the stop": report.tmp_entries_after_stop == 0,
    }
    if report.exit_status != 0 or report.errors:
        print(server.log_tail(), file=sys.stderr)
    return report


def print_report(report: Report) -> None:
    rate = report.requests / report.seconds if report.seconds else 0.0
    print(f"deepaas soak: {report.requests} requests, {report.concurrency} connections")
    print(
        f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )
    print(
        f"  duration: {report.seconds:.1f} s ({rate:.0f} req/s), "
        f"errors: {report.errors}"
    )
    for error in report.first_errors:
        print(f"    {error}")
    print(
        f"  RSS MiB: before load {report.rss_before_mib:.1f}, after warm-up "
        f"({report.warmup} requests) {report.rss_warm_mib:.1f}, end "
        f"{report.rss_end_mib:.1f} (growth {report.rss_growth_mib:+.1f}), peak "
        f"after warm-up {report.rss_peak_after_warmup_mib:.1f}"
    )
    print(
        f"  open fds: before load {report.fds_before}, after warm-up "
        f"{report.fds_warm}, peak {report.fds_peak}, end {report.fds_end}"
    )
    print(
        f"  temporary files: peak {report.tmp_files_peak}, end "
        f"{report.tmp_files_end}, after stop {report.tmp_entries_after_stop}"
    )
    print(f"  exit status after SIGTERM: {report.exit_status}")
    for name, ok in report.checks.items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    print("PASSED" if report.passed else "FAILED")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--warmup",
        type=int,
        default=10_000,
        help="requests before the warm-up figures are taken (at most half)",
    )
    parser.add_argument("--max-rss-growth-mib", type=float, default=10.0)
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--stop-timeout", type=float, default=30.0)
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument(
        "server_args",
        nargs="*",
        help="more deepaas-run options, after '--' (e.g. -- --workers 2)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="deepaas-soak-")
    try:
        report = asyncio.run(soak(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(report)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({**asdict(report), "passed": report.passed}, out, indent=2)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
