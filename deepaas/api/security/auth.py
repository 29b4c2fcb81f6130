"""The bearer-token check: who is calling, and may they call this route.

Installed only when authentication is configured: with it off, requests pass
through no extra code at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from deepaas.api.security.access import PUBLIC, Access, Scope, required_for
from deepaas.api.security.tokens import StaticTokens
from deepaas.exceptions import AuthenticationFailed, InsufficientScope

if TYPE_CHECKING:
    # Only for types: PyJWT is an optional dependency.
    from deepaas.api.security.oidc import OidcVerifier

__all__ = ["Authenticator", "auth_middleware", "bearer_token"]

# RFC 6750's b64token.
_CREDENTIALS = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_MISSING = (
    "Authentication required: send a token in an 'Authorization: Bearer <token>' header"
)


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    Raises:
        AuthenticationFailed: No header, another scheme, or a malformed token.
    """
    if not header:
        raise AuthenticationFailed(_MISSING)
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        raise AuthenticationFailed(_MISSING)
    if not _CREDENTIALS.fullmatch(credentials):
        raise AuthenticationFailed("Malformed bearer token", "invalid_token")
    return credentials


class Authenticator:
    """The scopes of a presented token: a static one, else an OIDC JWT.

    Args:
        tokens: The static tokens.
        oidc: The JWT verifier, when an issuer is configured.
    """

    def __init__(self, tokens: StaticTokens, oidc: OidcVerifier | None = None) -> None:
        self._tokens = tokens
        self._oidc = oidc

    async def scopes(self, header: str | None) -> frozenset[Scope]:
        """The scopes granted by an ``Authorization`` header's value.

        Raises:
            AuthenticationFailed: No token, or not a valid one.
            IdentityProviderUnavailable: The OIDC issuer's keys cannot be fetched.
        """
        token = bearer_token(header)
        scopes = self._tokens.lookup(token)
        if scopes is not None:
            return scopes
        if self._oidc is not None and token.count(".") == 2:
            return await self._oidc.scopes(token)
        raise AuthenticationFailed("Unknown token", "invalid_token")


def auth_middleware(
    authenticator: Authenticator, declared: Mapping[web.AbstractResource, Access]
) -> Middleware:
    """A middleware that checks the token against the scope the route needs.

    Args:
        authenticator: Turns a header into scopes.
        declared: Access of routes whose handler cannot carry it (read per
            request, so declarations made after this call count).
    """

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        access = required_for(request.match_info, declared)
        if access is not PUBLIC:
            granted = await authenticator.scopes(
                request.headers.get(hdrs.AUTHORIZATION)
            )
            if access not in granted and Scope.ADMIN not in granted:
                raise InsufficientScope(access.value)
        return await handler(request)

    return check_token
