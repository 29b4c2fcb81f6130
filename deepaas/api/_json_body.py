"""Reading a JSON request body that may be hostile: its text, syntax and depth.

Every way the body can be wrong is a client error with a JSON answer, never a
500: an unknown charset, bytes that are not text in it, invalid JSON, numbers
Python refuses to convert, and nesting deep enough to exhaust the interpreter's
recursion limit (``json.loads`` raises ``RecursionError`` near 1000 levels, and
anything that walks the value later, such as ``json.dumps`` of a job record,
fails a little earlier).
"""

from __future__ import annotations

import json
from typing import Any

from deepaas.exceptions import ArgumentError, MalformedRequest, UnsupportedMediaType

__all__ = ["MAX_DEPTH", "load_arguments"]

# Deeper than any argument a model needs, far from the recursion limit, so
# that whatever recurses over the value later (marshmallow, the job store,
# the model's answer) stays well inside it.
MAX_DEPTH = 100


def load_arguments(raw: bytes, charset: str | None) -> dict[str, Any]:
    """The JSON object of arguments in ``raw``, sent in ``charset`` (UTF-8 if none).

    Raises:
        UnsupportedMediaType: ``charset`` is not an encoding Python knows.
        MalformedRequest: Not text in that charset, not JSON, or nested deeper
            than :data:`MAX_DEPTH`.
        ArgumentError: Valid JSON, but not an object.
    """
    encoding = charset or "utf-8"
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise UnsupportedMediaType(
            f"Unknown charset '{charset}' in the request's Content-Type"
        ) from None
    except UnicodeDecodeError as err:
        raise _malformed(f"{err.reason} at byte {err.start} in {encoding}") from None
    try:
        body = json.loads(text)
    except RecursionError:
        raise _malformed(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:
        # Also big integers past int's digit limit, which ValueError reports.
        raise _malformed(str(err)) from None
    if _deeper_than(body, MAX_DEPTH, text):
        raise _malformed(f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(body, dict):
        raise ArgumentError({"json": ["The JSON body must be an object of arguments"]})
    return body


def _malformed(reason: str) -> MalformedRequest:
    return MalformedRequest({"json": [f"Invalid JSON body: {reason}"]})


def _deeper_than(value: Any, limit: int, text: str) -> bool:
    # Each level opens a bracket, so a body with few brackets cannot be deep:
    # two scans at C speed spare the walk for almost every body.
    if text.count("[") + text.count("{") <= limit:
        return False
    # Iterative, so the check itself cannot exhaust the recursion limit.
    stack: list[tuple[Any, int]] = (
        [(value, 1)] if isinstance(value, (dict, list)) else []
    )
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False
