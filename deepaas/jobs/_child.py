"""What a training process runs: re-create the model from its target, then train."""

from __future__ import annotations

from typing import Any

from deepaas.model import loading


def train(name: str, target: str, kwargs: dict[str, Any], warm: bool) -> Any:
    """Load model ``name`` from ``target`` in this (child) process and train it."""
    model = loading.wrap(name, loading.resolve(target), target=target)
    if warm:
        model.warm()
    return model.call("train", **kwargs)
