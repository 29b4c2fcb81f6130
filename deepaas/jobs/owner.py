"""Which server process runs a job, and whether that server is still alive.

A job's owner is ``<hostname>:<server pid>:<server start>:<worker pid>``. The
server pid is the process that started serving: the gunicorn master with
``--http-workers`` above 1, else the single server process; the worker pid is
the process that runs the training. The server's start time (from ``/proc``,
where there is one) tells a live server from a new process that got its pid.
"""

from __future__ import annotations

import os
import socket

__all__ = ["make_owner", "owner_alive"]


def _start_time(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot, or ``""`` if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    # Field 22 of stat (starttime); fields[0] is field 3 (state).
    return fields[19] if len(fields) > 19 else ""


def make_owner(server_pid: int, worker_pid: int | None = None) -> str:
    """The owner string for jobs run by ``worker_pid`` of server ``server_pid``."""
    worker = os.getpid() if worker_pid is None else worker_pid
    return f"{socket.gethostname()}:{server_pid}:{_start_time(server_pid)}:{worker}"


def owner_alive(owner: str) -> bool:
    """Whether the server and worker that own a job still run, as far as we can tell.

    A server on another host, or an owner not understood, counts as gone.
    """
    try:
        host, pid_text, start, worker_text = owner.rsplit(":", 3)
        pid, worker = int(pid_text), int(worker_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    return _alive(pid) and _start_time(pid) == start and _alive(worker)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
