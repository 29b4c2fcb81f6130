"""Job owners: which server runs a training, and whether it still does."""

import os
import socket
import subprocess
import sys

from deepaas.jobs.owner import make_owner, owner_alive


def test_this_process_is_alive():
    owner = make_owner(os.getpid())
    assert owner.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert owner.endswith(f":{os.getpid()}")
    assert owner_alive(owner)


def test_a_finished_process_is_not():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = make_owner(proc.pid, proc.pid)
    proc.wait()
    assert not owner_alive(owner)


def test_a_reused_pid_with_another_start_time_is_not():
    host, pid, _start, worker = make_owner(os.getpid()).split(":")
    assert not owner_alive(f"{host}:{pid}:1:{worker}")


def test_another_host_or_garbage_counts_as_gone():
    _host, pid, start, worker = make_owner(os.getpid()).split(":")
    assert not owner_alive(f"elsewhere.invalid:{pid}:{start}:{worker}")
    assert not owner_alive("nonsense")
    assert not owner_alive("h:x:y:z")
