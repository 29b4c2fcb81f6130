"""Training jobs: their record, their store and the manager that runs them."""

from deepaas.jobs.manager import JobManager
from deepaas.jobs.sqlite import SQLiteJobStore
from deepaas.jobs.store import Job, JobStatus, JobStore, MemoryJobStore

__all__ = [
    "Job",
    "JobManager",
    "JobStatus",
    "JobStore",
    "MemoryJobStore",
    "SQLiteJobStore",
]
