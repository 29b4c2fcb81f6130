"""What a training process runs: re-create the model from its target, then train."""

from __future__ import annotations

import os
import sys
from typing import Any

from deepaas.exceptions import ModelCallError
from deepaas.model import loading, progress


def train(
    name: str,
    target: str,
    kwargs: dict[str, Any],
    warm: bool,
    log_path: str,
    progress_path: str,
) -> Any:
    """Load model ``name`` from ``target`` in this (child) process and train it.

    Standard output and error go to ``log_path``; :func:`progress.report` writes
    to ``progress_path``.
    """
    _redirect_output(log_path)
    os.environ[progress.PROGRESS_ENV] = progress_path
    try:
        return _train(name, target, kwargs, warm)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _redirect_output(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    # At the descriptor level, so that output of C code and subprocesses is kept.
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)


def _train(name: str, target: str, kwargs: dict[str, Any], warm: bool) -> Any:
    model = loading.wrap(name, loading.resolve(target), target=target)
    if warm:
        model.warm()
    try:
        return model.call("train", **kwargs)
    except ModelCallError as exc:
        # The job's message is the model's own exception text, as in 2.x.
        if exc.__cause__ is not None:
            raise exc.__cause__ from None
        raise
