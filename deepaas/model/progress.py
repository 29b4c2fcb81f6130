"""Report a training's progress from inside ``train()``.

Example::

    from deepaas.model import progress

    def train(epochs=10, **kwargs):
        for epoch in range(epochs):
            loss = run_one_epoch()
            progress.report((epoch + 1) / epochs, f"epoch {epoch + 1}", loss=loss)

The latest report shows in the job record (``GET .../train/{uuid}``) under
``progress``. Outside a training run by deepaas (a test, ``deepaas-cli``) it does
nothing, so a model may call it unconditionally.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

__all__ = ["PROGRESS_ENV", "read", "report"]

# Set by deepaas in a training process: where the latest report is written. An
# environment variable, so that processes the model starts can report too.
PROGRESS_ENV = "DEEPAAS_JOB_PROGRESS"


def report(
    fraction: float | None = None, message: str | None = None, **metrics: float
) -> None:
    """Record how far the current training has gone.

    Args:
        fraction: Share of the work done, from 0 to 1.
        message: A short human description of the current step.
        **metrics: Numbers to show with it (loss, accuracy...).

    Raises:
        ValueError: ``fraction`` is outside 0..1, or a metric is not a finite number.
    """
    if fraction is not None and not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction!r}")
    for name, value in metrics.items():
        if isinstance(value, bool) or not math.isfinite(float(value)):
            raise ValueError(f"metric {name!r} must be a finite number, got {value!r}")
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    state = {
        "fraction": None if fraction is None else float(fraction),
        "message": None if message is None else str(message),
        "metrics": {name: float(value) for name, value in metrics.items()},
        "time": time.time(),
    }
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    # Atomic: a reader never sees half a report.
    os.replace(partial, path)


def read(path: str) -> dict[str, Any] | None:
    """The latest report written at ``path``, or ``None`` if there is none."""
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None
