"""A NumPy MLP classifier (64 -> 1536 -> 1536 -> 10, float64, random weights).

About 20 MB of weights; one sample costs about 0.5 ms on one core (memory
bound), a batch of 32 about 0.15 ms per sample.  Limit BLAS to one thread
(``OPENBLAS_NUM_THREADS=1``); the benchmark driver does.

``predict(data=...)`` takes a JSON string: a list of 64 numbers, or a list of
such lists.  ``predict_batch(items)`` takes a list of keyword dictionaries, as a
dynamic batcher would collect them, and runs them as one forward pass.
"""

import itertools
import json

import numpy as np
from webargs import fields

from deepaas_bench_models import metadata, timed_train

N_IN = 64
HIDDEN = 1536
N_OUT = 10
_WEIGHTS = None


def weights():
    """Return the (deterministic) layers, built on first use."""
    global _WEIGHTS
    if _WEIGHTS is None:
        rng = np.random.default_rng(0)
        sizes = [N_IN, HIDDEN, HIDDEN, N_OUT]
        layers = []
        for a, b in itertools.pairwise(sizes):
            w = rng.standard_normal((a, b)) * np.sqrt(2.0 / a)
            layers.append((w, np.zeros(b)))
        _WEIGHTS = layers
    return _WEIGHTS


def forward(x):
    """Map an (n, 64) array to (n, 10) class probabilities."""
    layers = weights()
    h = x
    for w, b in layers[:-1]:
        h = h @ w
        h += b
        np.maximum(h, 0, out=h)
    w, b = layers[-1]
    z = h @ w + b
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def parse(data):
    """Turn the ``data`` argument into an (n, 64) array."""
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != N_IN:
        raise ValueError(f"data must be {N_IN} numbers or a list of such lists")
    return arr


def _answer(probs):
    return {
        "probabilities": np.round(probs, 6).tolist(),
        "labels": probs.argmax(axis=1).tolist(),
    }


def get_metadata():
    return metadata("mlp", "NumPy MLP classifier 64-1536-1536-10 (random weights).")


def warm():
    forward(np.zeros((1, N_IN)))


def get_predict_args():
    return {
        "data": fields.Str(
            required=True,
            metadata={"description": "JSON list of 64 floats, or a list of them."},
        )
    }


def predict(**kwargs):
    return _answer(forward(parse(kwargs["data"])))


def predict_batch(items):
    """Predict many requests at once: ``items`` is a list of keyword dicts.

    Returns one answer per item, in order, each shaped like ``predict``'s.
    """
    arrays = [parse(kw["data"]) for kw in items]
    probs = forward(np.concatenate(arrays)) if arrays else np.zeros((0, N_OUT))
    out, start = [], 0
    for arr in arrays:
        out.append(_answer(probs[start : start + len(arr)]))
        start += len(arr)
    return out


def get_train_args():
    return {
        "seconds": fields.Float(
            load_default=1.0, metadata={"description": "Training length (s)."}
        )
    }


def train(**kwargs):
    x = np.random.default_rng(1).standard_normal((32, N_IN))
    return timed_train(kwargs.get("seconds", 1.0), step=lambda: forward(x))
