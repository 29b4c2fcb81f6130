"""Turning what a model returns into JSON, for the server and the CLI alike."""

from __future__ import annotations

import json
from typing import Any

from deepaas.exceptions import InvalidModelResponse

__all__ = ["to_json"]


def _default(value: Any) -> Any:
    # numpy scalars and arrays, without importing numpy.
    for method in ("tolist", "item"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# Built once: json.dumps(default=...) would build an encoder for every call.
_ENCODER = json.JSONEncoder(default=_default)


def to_json(value: Any) -> str:
    """JSON-encode a model's result (numpy values included).

    Raises:
        InvalidModelResponse: The value cannot be expressed in JSON.
    """
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as err:
        raise InvalidModelResponse(
            f"The model's result cannot be written as JSON: {err}"
        ) from None
