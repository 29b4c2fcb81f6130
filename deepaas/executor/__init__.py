"""Where model code runs: a thread pool, a killable child, or a pool of processes.

Nothing here knows about models or HTTP: callers hand in module-level functions.
"""

from deepaas.executor._pool import ProcessPool
from deepaas.executor._process import RemoteError, run_in_process, watch_parent
from deepaas.executor._thread import ThreadExecutor

__all__ = [
    "ProcessPool",
    "RemoteError",
    "ThreadExecutor",
    "run_in_process",
    "watch_parent",
]
