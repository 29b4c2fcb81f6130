"""Who may call a route: declared next to the route, read by the auth middleware.

A handler declares what it needs with :func:`requires` (a scope) or :func:`public`
(no token at all). A route whose handler cannot carry the declaration (a static
directory) is declared with :func:`declare` on the application that serves it. A
route declared nowhere needs the ``admin`` scope: a route added without thinking
about access is closed, not open.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from aiohttp import web

__all__ = [
    "PUBLIC",
    "ROUTE_ACCESS",
    "Access",
    "Scope",
    "access_of",
    "declare",
    "parse_scopes",
    "public",
    "required_for",
    "requires",
]


class Scope(str, enum.Enum):
    """What a token may do; ``admin`` implies every other scope."""

    PREDICT = "predict"
    TRAIN = "train"
    ADMIN = "admin"


class _Public(enum.Enum):
    PUBLIC = "public"


PUBLIC: Final = _Public.PUBLIC
"""The access of a route that needs no token (health, API documents)."""

Access = Scope | _Public

ROUTE_ACCESS: web.AppKey[dict[web.AbstractResource, Access]] = web.AppKey(
    "deepaas_route_access"
)
"""Access of resources whose handler cannot carry it, on the root application."""

_ATTRIBUTE = "__deepaas_access__"
H = TypeVar("H", bound=Callable[..., Any])


def requires(scope: Scope) -> Callable[[H], H]:
    """Decorate a handler whose route needs a token with ``scope``."""

    def mark(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, scope)
        return handler

    return mark


def public(handler: H) -> H:
    """Decorate a handler whose route needs no token."""
    setattr(handler, _ATTRIBUTE, PUBLIC)
    return handler


def declare(
    app: web.Application, resource: web.AbstractResource, access: Access
) -> None:
    """Declare the access of ``resource`` (for handlers that cannot be decorated).

    Args:
        app: The root application (the declarations live there).
        resource: What the router returned when the route was added.
        access: A scope, or :data:`PUBLIC`.
    """
    if ROUTE_ACCESS not in app:
        app[ROUTE_ACCESS] = {}
    app[ROUTE_ACCESS][resource] = access


def access_of(handler: Callable[..., Any]) -> Access | None:
    """What ``handler`` declared, or ``None`` when it declared nothing."""
    access = getattr(handler, _ATTRIBUTE, None)
    return access if isinstance(access, Scope | _Public) else None


def required_for(
    match_info: web.UrlMappingMatchInfo,
    declared: Mapping[web.AbstractResource, Access],
) -> Access:
    """The access a matched request needs (``PUBLIC`` when nothing matched).

    A request that matched no route (it will be answered 404 or 405) needs no
    token: the answer holds nothing, and the path may be redirected to one that
    is checked.
    """
    if match_info.http_exception is not None:
        return PUBLIC
    access = access_of(match_info.handler)
    if access is not None:
        return access
    resource = match_info.route.resource
    return Scope.ADMIN if resource is None else declared.get(resource, Scope.ADMIN)


def parse_scopes(names: str, *, where: str) -> frozenset[Scope]:
    """Scopes from a comma-separated list, e.g. ``"predict,train"``.

    Raises:
        ValueError: A name is not a scope; the message says ``where``.
    """
    scopes = set()
    for name in names.split(","):
        name = name.strip().lower()
        if not name:
            continue
        try:
            scopes.add(Scope(name))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(
                f"{where}: unknown scope {name!r} (known: {known})"
            ) from None
    return frozenset(scopes)
