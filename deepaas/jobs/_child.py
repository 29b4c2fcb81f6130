"""What a training process runs: re-create the model from its target, then train."""

from __future__ import annotations

from typing import Any

from deepaas.exceptions import ModelCallError
from deepaas.model import loading


def train(name: str, target: str, kwargs: dict[str, Any], warm: bool) -> Any:
    """Load model ``name`` from ``target`` in this (child) process and train it."""
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
