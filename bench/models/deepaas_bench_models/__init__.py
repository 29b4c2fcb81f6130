"""Benchmark models in the DEEPaaS 2.x module style.

Every submodule is registered in the ``deepaas.v2.model`` entry-point namespace
and exposes module-level ``get_metadata``, ``warm``, ``get_predict_args``,
``predict``, ``get_train_args`` and ``train``, so the same package runs under
deepaas 2.6.0 and under this project.
"""

import os
import time


def metadata(name, description):
    """Return the metadata dictionary shared by the bench models."""
    return {
        "name": name,
        "description": description,
        "version": "0.1.0",
        "author": "deepaas developers",
        "license": "Apache-2.0",
    }


def timed_train(seconds, step=None):
    """Run for ``seconds`` wall seconds: sleep, or call ``step()`` until done."""
    seconds = max(0.0, float(seconds))
    start = time.monotonic()
    steps = 0
    if step is None:
        time.sleep(seconds)
    else:
        while time.monotonic() - start < seconds:
            step()
            steps += 1
    return {
        "seconds": seconds,
        "elapsed": round(time.monotonic() - start, 4),
        "steps": steps,
        "pid": os.getpid(),
    }
