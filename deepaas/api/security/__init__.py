"""Authentication (bearer tokens, OIDC JWTs), per-route scopes and CORS.

Handlers declare what they need with :func:`requires` or :func:`public` (see
:mod:`deepaas.api.security.access`); :func:`install` adds the checks to the
application as the configuration asks, and nothing at all when it asks for none.
Plugins declare their routes the same way; an undeclared route needs ``admin``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from deepaas.api.security import cors
from deepaas.api.security.access import (
    PUBLIC,
    ROUTE_ACCESS,
    Access,
    Scope,
    access_of,
    declare,
    public,
    requires,
)
from deepaas.api.security.auth import Authenticator, auth_middleware
from deepaas.api.security.tokens import StaticTokens
from deepaas.config import Config
from deepaas.exceptions import ConfigurationError

if TYPE_CHECKING:
    # Only for types: PyJWT is an optional dependency.
    from deepaas.api.security.oidc import OidcVerifier

__all__ = [
    "PUBLIC",
    "TOKENS_ENV",
    "Access",
    "Scope",
    "access_of",
    "declare",
    "install",
    "public",
    "requires",
]

_LOG = logging.getLogger(__name__)

TOKENS_ENV = "DEEPAAS_TOKENS"


def install(app: web.Application, config: Config) -> None:
    """Add CORS and authentication to ``app`` (the root application) as configured.

    Call it once routes and plugins are set up; the token file and the JWKS file
    are read here.

    Raises:
        ConfigurationError: A token or JWKS file is unusable, or OIDC is
            configured without its dependencies.
    """
    if config.cors_origins:
        cors.install(app, config.cors_origins)
        _LOG.info("CORS allowed for: %s", ", ".join(config.cors_origins))
    if not config.auth_enabled:
        why = "--auth none" if config.auth == "none" else "no tokens configured"
        _LOG.info("Authentication off (%s)", why)
        return
    tokens = StaticTokens.load(
        config.auth_token_file, config.auth_tokens, env_name=TOKENS_ENV
    )
    oidc = None
    if config.oidc_issuer:
        oidc = _oidc(config, config.oidc_issuer)
    if ROUTE_ACCESS not in app:
        app[ROUTE_ACCESS] = {}
    declared = app[ROUTE_ACCESS]
    app.middlewares.append(auth_middleware(Authenticator(tokens, oidc), declared))
    _LOG.info(
        "Authentication on: %d static token(s)%s",
        len(tokens),
        f", JWTs of {config.oidc_issuer}" if oidc else "",
    )


def _oidc(config: Config, issuer: str) -> OidcVerifier:
    try:
        from deepaas.api.security.oidc import OidcVerifier
    except ImportError as exc:
        raise ConfigurationError(
            f"oidc_issuer needs PyJWT ({exc}): pip install 'deepaas[oidc]'"
        ) from exc
    return OidcVerifier(
        issuer=issuer,
        audiences=config.oidc_audience,
        jwks_file=config.oidc_jwks_file,
        jwks_uri=config.oidc_jwks_uri,
        scope_claims=config.oidc_scope_claims,
        scope_prefix=config.oidc_scope_prefix,
    )
