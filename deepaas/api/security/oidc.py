"""OpenID Connect access tokens: JWTs checked against the issuer's public keys.

A token is accepted when its signature verifies with one of the issuer's keys
(asymmetric algorithms only), ``iss`` is the configured issuer, ``aud`` names one
of the configured audiences, and ``exp`` (required) and ``nbf`` hold, with
:data:`LEEWAY` seconds of clock skew. Its scopes are read from the first scope
claim present.

The keys come from a local JWKS file, read once (no network at all), or from the
issuer's JWKS URL: fetched in a thread, never on the event loop, cached
:data:`KEYS_LIFESPAN` seconds and fetched again for an unknown key id at most every
:data:`REFRESH_COOLDOWN` seconds. A verified token is remembered, by digest, until
it expires, so each token is checked once.

Needs PyJWT with ``cryptography`` (``pip install 'deepaas[oidc]'``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt import algorithms as jwt_algorithms

from deepaas.api.security.access import Scope
from deepaas.api.security.tokens import digest
from deepaas.config import is_loopback
from deepaas.exceptions import (
    AuthenticationFailed,
    ConfigurationError,
    IdentityProviderUnavailable,
)

__all__ = [
    "FAILURE_BACKOFF",
    "FETCH_TIMEOUT",
    "KEYS_LIFESPAN",
    "LEEWAY",
    "REFRESH_COOLDOWN",
    "OidcVerifier",
]

_LOG = logging.getLogger(__name__)

LEEWAY = 30
"""Seconds of clock skew allowed on ``exp`` and ``nbf``."""
KEYS_LIFESPAN = 300
"""Seconds the issuer's fetched keys are used before they are fetched again."""
REFRESH_COOLDOWN = 30
"""Least seconds between two fetches caused by unknown key ids or failures."""
FETCH_TIMEOUT = 10
"""Seconds a fetch of the discovery document or the keys may take."""
FAILURE_BACKOFF = 5
"""Seconds tokens are answered 503 at once after a failed fetch."""
_UNAVAILABLE = "The token issuer's keys cannot be fetched; retry later"
_CACHE_SIZE = 1024

# Asymmetric algorithms only, by key type: a public key can never be used as an
# HMAC secret, and "none" is never accepted.
_ALGORITHMS = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
    "OKP": ("EdDSA",),
}
_SCOPE_NAMES = {s.value: s for s in Scope}


class OidcVerifier:
    """Checks JWTs of one issuer and returns their scopes.

    Args:
        issuer: The exact ``iss`` of accepted tokens.
        audiences: Accepted ``aud`` values; a token needs one of them.
        jwks_file: A local JWKS file; no network is used.
        jwks_uri: Where to fetch the keys; by default the ``jwks_uri`` of the
            issuer's discovery document.
        scope_claims: Claims holding the scopes; the first one present is read.
        scope_prefix: Prefix of deepaas's scopes in that claim.

    Raises:
        ConfigurationError: The JWKS file is unusable, or a URL is not ``https``
            (plain ``http`` is accepted on loopback only).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audiences: Sequence[str],
        jwks_file: str | None = None,
        jwks_uri: str | None = None,
        scope_claims: Sequence[str] = ("scope", "scp"),
        scope_prefix: str = "",
    ) -> None:
        if not jwt_algorithms.has_crypto:
            raise ConfigurationError(
                "oidc_issuer needs the 'cryptography' package: "
                "pip install 'deepaas[oidc]'"
            )
        self.issuer = issuer
        self._audiences = list(audiences)
        self._claims = tuple(scope_claims)
        self._prefix = scope_prefix
        self._cache: dict[bytes, tuple[frozenset[Scope], float]] = {}
        self._keys: jwt.PyJWKSet | None = None
        self._remote: _RemoteKeys | None = None
        if jwks_file is not None:
            self._keys = _read_jwks(jwks_file)
        else:
            if jwks_uri is None:
                _require_https(issuer, "oidc_issuer")
            else:
                _require_https(jwks_uri, "oidc_jwks_uri")
            self._remote = _RemoteKeys(issuer, jwks_uri)

    @property
    def offline(self) -> bool:
        """Whether the keys come from a local file."""
        return self._keys is not None

    async def scopes(self, token: str) -> frozenset[Scope]:
        """Verify ``token`` and return its scopes.

        Raises:
            AuthenticationFailed: The token is not valid (the message says why).
            IdentityProviderUnavailable: The issuer's keys cannot be fetched.
        """
        key_of = digest(token)
        now = time.time()
        cached = self._cache.get(key_of)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("Malformed token", "invalid_token") from None
        kid = header.get("kid")
        if self._keys is not None:
            key = _find(self._keys, kid)
        else:
            assert self._remote is not None
            key = await asyncio.to_thread(self._remote.key, kid)
        if key is None:
            raise AuthenticationFailed(
                "Token signed by an unknown key", "invalid_token"
            )
        claims = self._decode(token, key)
        scopes = self._scopes(claims)
        self._remember(key_of, scopes, float(claims["exp"]) + LEEWAY, now)
        return scopes

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=list(_ALGORITHMS.get(key.key_type or "", ())),
                audience=self._audiences,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(_reason(exc), "invalid_token") from None

    def _scopes(self, claims: Mapping[str, Any]) -> frozenset[Scope]:
        value = next((claims[c] for c in self._claims if c in claims), "")
        if isinstance(value, str):
            names: Iterable[Any] = value.split()
        elif isinstance(value, list):
            names = value
        else:
            names = ()
        prefix = self._prefix
        found = set()
        for name in names:
            if isinstance(name, str) and name.startswith(prefix):
                scope = _SCOPE_NAMES.get(name[len(prefix) :])
                if scope is not None:
                    found.add(scope)
        return frozenset(found)

    def _remember(
        self, key: bytes, scopes: frozenset[Scope], until: float, now: float
    ) -> None:
        if len(self._cache) >= _CACHE_SIZE:
            for old in [k for k, (_, end) in self._cache.items() if end <= now]:
                del self._cache[old]
            while len(self._cache) >= _CACHE_SIZE:
                del self._cache[next(iter(self._cache))]
        self._cache[key] = (scopes, until)


def _reason(exc: jwt.PyJWTError) -> str:
    # Fixed texts: PyJWT's own messages may quote parts of the token.
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "Token expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "Token not valid yet"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "Token from another issuer"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "Token for another audience"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"Token without the '{exc.claim}' claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "Token signature does not verify"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "Token signed with an algorithm not accepted"
    return "Malformed token"


def _find(keys: jwt.PyJWKSet, kid: Any) -> jwt.PyJWK | None:
    usable = [k for k in keys.keys if k.public_key_use in (None, "sig")]
    if kid is None:
        # A token without a key id is accepted only when there is no choice.
        return usable[0] if len(usable) == 1 else None
    return next((k for k in usable if k.key_id == kid), None)


def _read_jwks(path: str) -> jwt.PyJWKSet:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return jwt.PyJWKSet.from_dict(data)
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise ConfigurationError(f"cannot use the JWKS file {path}: {exc}") from exc


def _require_https(url: str, name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise ConfigurationError(
        f"{name} must be an https URL (http only on a loopback address): {url!r}"
    )


class _RemoteKeys:
    """The issuer's keys fetched over HTTPS; every method blocks (run in a thread)."""

    def __init__(self, issuer: str, jwks_uri: str | None) -> None:
        self._issuer = issuer
        self._uri = jwks_uri
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()
        self._last_refresh = -float("inf")
        self._retry_at = -float("inf")

    def key(self, kid: Any) -> jwt.PyJWK | None:
        """The signing key ``kid`` (``None``: no such key), fetching as needed.

        Raises:
            IdentityProviderUnavailable: A fetch failed, now or moments ago.
        """
        with self._lock:
            # After a failure, answer at once for a while rather than have every
            # request wait on an issuer that is down.
            if time.monotonic() < self._retry_at:
                raise IdentityProviderUnavailable(_UNAVAILABLE)
            try:
                client = self._get_client()
                key = _find(client.get_jwk_set(), kid)
                if key is None and self._may_refresh():
                    key = _find(client.get_jwk_set(refresh=True), kid)
            except (OSError, ValueError, jwt.PyJWTError, ConfigurationError) as exc:
                _LOG.warning("Cannot fetch the keys of %s: %s", self._issuer, exc)
                self._retry_at = time.monotonic() + FAILURE_BACKOFF
                raise IdentityProviderUnavailable(_UNAVAILABLE) from None
            return key

    def _may_refresh(self) -> bool:
        now = time.monotonic()
        if now - self._last_refresh < REFRESH_COOLDOWN:
            return False
        self._last_refresh = now
        return True

    def _get_client(self) -> jwt.PyJWKClient:
        if self._client is None:
            if self._uri is None:
                self._uri = self._discover()
            self._client = jwt.PyJWKClient(
                self._uri, lifespan=KEYS_LIFESPAN, timeout=FETCH_TIMEOUT
            )
            # The first fetch counts as a refresh for the cooldown.
            self._last_refresh = time.monotonic()
        return self._client

    def _discover(self) -> str:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            document = json.load(response)
        jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks_uri, str):
            raise ValueError(f"{url} names no jwks_uri")
        _require_https(jwks_uri, "the discovered jwks_uri")
        return jwks_uri
