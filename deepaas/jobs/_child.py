"""What a training worker process runs: load the model once, then train it per job.

A worker serves one training after another (see :class:`~deepaas.jobs.JobManager`),
so everything a training changes in the process for itself (where its output
goes, where its progress is written) is put back when it ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from deepaas.exceptions import ModelCallError
from deepaas.model import loading, progress
from deepaas.model.v2.wrapper import ModelWrapper


def serve(name: str, target: str, warm: bool) -> Callable[..., Any]:
    """Load model ``name`` from ``target`` in this worker; return what trains it.

    The initializer of a training worker: it runs once per process, and the
    model object it makes serves every training the process runs.
    """
    model = loading.wrap(name, loading.resolve(target), target=target)
    if warm:
        model.warm()
    return functools.partial(train, model)


def train(
    model: ModelWrapper, kwargs: dict[str, Any], log_path: str, progress_path: str
) -> Any:
    """Train ``model`` with ``kwargs``.

    Standard output and error go to ``log_path`` and :func:`progress.report`
    writes to ``progress_path`` while it runs; both are put back afterwards.
    """
    with _output_to(log_path), _progress_to(progress_path):
        try:
            return model.call("train", **kwargs)
        except ModelCallError as exc:
            # The job's message is the model's own exception text, as in 2.x.
            if exc.__cause__ is not None:
                raise exc.__cause__ from None
            raise


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[None]:
    _flush()
    saved = os.dup(1), os.dup(2)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # At the descriptor level, so that output of C code and subprocesses is
        # kept too.
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(line_buffering=True)
        yield
    finally:
        # What is still buffered belongs to this training: flush it before the
        # descriptors go back to the worker's own output.
        _flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def _progress_to(path: str) -> Iterator[None]:
    before = os.environ.get(progress.PROGRESS_ENV)
    os.environ[progress.PROGRESS_ENV] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(progress.PROGRESS_ENV, None)
        else:
            os.environ[progress.PROGRESS_ENV] = before
