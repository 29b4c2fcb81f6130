"""Let modules written for marshmallow 3 import under marshmallow 4.

DEEPaaS 2.x modules declare arguments as ``fields.Str(missing="x", description="...")``
and ``fields.Field(type="file", location="form")``. marshmallow 4 dropped the
``missing``/``default`` keywords and the free-form metadata keywords, so such a module
fails with ``TypeError`` as soon as it is imported. Many of those modules pin no
marshmallow version, so a plain install gets marshmallow 4: we translate the old
keywords (``missing`` -> ``load_default``, ``default`` -> ``dump_default``, anything
else -> ``metadata``) instead of refusing to serve them. Under marshmallow 3 nothing is
changed. :func:`install` is idempotent and is called before any model is imported.
"""

from __future__ import annotations

import functools
import inspect
import logging
import operator
from typing import Any

from marshmallow import fields

__all__ = ["HAS_ENUM_FIELD", "MARSHMALLOW_MAJOR", "install"]

_LOG = logging.getLogger(__name__)
_MARK = "_deepaas_legacy_kwargs"


def _major() -> int:
    from importlib import metadata

    return int(metadata.version("marshmallow").split(".", 1)[0])


MARSHMALLOW_MAJOR = _major()
# Read before install() may add a placeholder: marshmallow >= 3.18 has the real one.
HAS_ENUM_FIELD = hasattr(fields, "Enum")


def install() -> None:
    """Make ``marshmallow.fields.Field`` accept the marshmallow-3 keywords.

    Under marshmallow 3.13-3.17, also give ``marshmallow.fields`` the ``Enum``
    name that apispec 6 tests fields against (``isinstance``); no field of that
    class can exist there, so the placeholder only answers "no".
    """
    if not HAS_ENUM_FIELD and not hasattr(fields, "Enum"):
        setattr(fields, "Enum", type("Enum", (fields.Field,), {}))  # noqa: B010
    if MARSHMALLOW_MAJOR < 4 or getattr(fields.Field.__init__, _MARK, False):
        return
    original = fields.Field.__init__
    known = set(inspect.signature(original).parameters) - {"self"}

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        legacy = {k: kwargs.pop(k) for k in list(kwargs) if k not in known}
        if legacy:
            if "missing" in legacy and "load_default" not in kwargs:
                kwargs["load_default"] = legacy.pop("missing")
            if "default" in legacy and "dump_default" not in kwargs:
                kwargs["dump_default"] = legacy.pop("default")
            legacy.pop("missing", None)
            legacy.pop("default", None)
            if legacy:
                kwargs["metadata"] = {**(kwargs.get("metadata") or {}), **legacy}
        original(self, *args, **kwargs)

    setattr(__init__, _MARK, True)
    fields.Field.__init__ = __init__  # type: ignore[method-assign]
    # 2.x code also reads these attributes back.
    for old, new in (("missing", "load_default"), ("default", "dump_default")):
        if not hasattr(fields.Field, old):
            setattr(fields.Field, old, property(operator.attrgetter(new)))
    _LOG.debug("marshmallow %s: accepting marshmallow-3 field keywords", _major())
