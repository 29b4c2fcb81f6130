"""OpenID Connect JWTs, checked against a local JWKS file or a local issuer."""

import json
import sys
import time

import jwt
import pytest
from aiohttp import web

from deepaas.api import create_app
from deepaas.api.security import oidc
from deepaas.api.security.access import Scope
from deepaas.api.security.oidc import OidcVerifier
from deepaas.exceptions import (
    AuthenticationFailed,
    ConfigurationError,
    IdentityProviderUnavailable,
)
from tests.api.security.conftest import AUDIENCE, ISSUER, Signer, bearer

PREDICT = "/v2/models/legacy/predict/"
TRAIN = "/v2/models/legacy/train/"


async def _status(client, token, path=PREDICT):
    resp = await client.post(path, headers=bearer(token))
    body = await resp.json()
    return resp.status, body.get("message"), resp.headers.get("WWW-Authenticate")


async def test_valid_token_with_its_scope(oidc_client, signer):
    status, _, _ = await _status(oidc_client, signer.token("openid predict"))
    assert status == 200


async def test_ec_keys_work_too(oidc_client, ec_signer):
    status, _, _ = await _status(oidc_client, ec_signer.token("predict"))
    assert status == 200


async def test_missing_scope_is_403(oidc_client, signer):
    status, message, challenge = await _status(
        oidc_client, signer.token("predict"), TRAIN
    )
    assert status == 403
    assert "'train' scope" in message
    assert 'error="insufficient_scope"' in challenge


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "Token expired"),
        ({"nbf": int(time.time()) + 3600}, "Token not valid yet"),
        ({"iss": "https://elsewhere.example.org"}, "Token from another issuer"),
        ({"aud": "another-api"}, "Token for another audience"),
        ({"exp": None}, "Token without the 'exp' claim"),
        ({"aud": None}, "Token without the 'aud' claim"),
    ],
)
async def test_invalid_claims_are_401_saying_why(oidc_client, signer, claims, reason):
    status, message, challenge = await _status(oidc_client, signer.token(**claims))
    assert status == 401
    assert message == reason
    assert 'error="invalid_token"' in challenge
    assert f'error_description="{reason}"' in challenge


async def test_signature_by_another_key_is_refused(oidc_client, other_rsa_key):
    forger = Signer("key-1", other_rsa_key, "RS256")  # the real key's id
    status, message, _ = await _status(oidc_client, forger.token())
    assert (status, message) == (401, "Token signature does not verify")


async def test_unknown_key_id_is_refused(oidc_client, rsa_key):
    stranger = Signer("key-unknown", rsa_key, "RS256")
    status, message, _ = await _status(oidc_client, stranger.token())
    assert (status, message) == (401, "Token signed by an unknown key")


async def test_symmetric_and_unsigned_tokens_are_refused(oidc_client, signer):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60, "scope": "admin"}
    # HS256, as in the key-confusion attack that signs with public material.
    secret = signer.jwk["n"].encode()
    forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "key-1"})
    status, message, _ = await _status(oidc_client, forged)
    assert (status, message) == (401, "Token signed with an algorithm not accepted")
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "key-1"})
    status, _, _ = await _status(oidc_client, unsigned)
    assert status == 401


async def test_garbage_with_two_dots_is_401(oidc_client):
    status, message, _ = await _status(oidc_client, "abc.def.ghi")
    assert (status, message) == (401, "Malformed token")


async def test_static_tokens_work_beside_oidc(aiohttp_client, oidc_config, models):
    config = oidc_config.replace(auth_tokens="static-token-1 predict")
    client = await aiohttp_client(create_app(config, models))
    assert (await _status(client, "static-token-1"))[0] == 200


async def test_scp_list_claim_and_prefix(aiohttp_client, oidc_config, models, signer):
    config = oidc_config.replace(oidc_scope_prefix="deepaas:")
    client = await aiohttp_client(create_app(config, models))
    token = signer.token(scope=None, scp=["deepaas:train", "predict"])
    assert (await _status(client, token, TRAIN))[0] == 200
    # Without the prefix, "predict" is someone else's scope.
    assert (await _status(client, token))[0] == 403


async def test_custom_scope_claim(aiohttp_client, oidc_config, models, signer):
    config = oidc_config.replace(oidc_scope_claims=("roles",))
    client = await aiohttp_client(create_app(config, models))
    assert (await _status(client, signer.token(scope="predict")))[0] == 403
    assert (await _status(client, signer.token(roles="predict")))[0] == 200


async def test_a_verified_token_is_checked_once(oidc_client, signer, monkeypatch):
    calls = []
    real = jwt.decode

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(oidc.jwt, "decode", counting)
    token = signer.token()
    for _ in range(3):
        assert (await _status(oidc_client, token))[0] == 200
    assert len(calls) == 1


# --- Configuration ------------------------------------------------------------------


def test_unusable_jwks_file_fails_the_build(config, models, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": []}')
    bad = config.replace(
        oidc_issuer=ISSUER, oidc_audience=(AUDIENCE,), oidc_jwks_file=str(path)
    )
    with pytest.raises(ConfigurationError, match="cannot use the JWKS file"):
        create_app(bad, models)


@pytest.mark.parametrize(
    ("issuer", "uri"),
    [
        ("http://issuer.example.org", None),
        (ISSUER, "http://issuer.example.org/jwks"),
        (ISSUER, "file:///etc/passwd"),
    ],
)
def test_keys_must_come_over_https(issuer, uri):
    with pytest.raises(ConfigurationError, match="must be an https URL"):
        OidcVerifier(issuer=issuer, audiences=[AUDIENCE], jwks_uri=uri)


def test_without_pyjwt_the_start_fails_saying_what_to_install(
    config, models, jwks_file, monkeypatch
):
    monkeypatch.setitem(sys.modules, "jwt", None)
    monkeypatch.delitem(sys.modules, "deepaas.api.security.oidc")
    config = config.replace(
        oidc_issuer=ISSUER, oidc_audience=(AUDIENCE,), oidc_jwks_file=str(jwks_file)
    )
    with pytest.raises(ConfigurationError, match=r"pip install 'deepaas\[oidc\]'"):
        create_app(config, models)


# --- Keys fetched from the issuer ---------------------------------------------------


class Issuer:
    """A local issuer: discovery document and JWKS, counting fetches."""

    def __init__(self, signers):
        self.signers = list(signers)
        self.fetches = 0
        self.down = False
        self.url = None

    def app(self):
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/keys", self.keys)
        return app

    async def discovery(self, request):
        if self.down:
            raise web.HTTPServiceUnavailable()
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/keys"})

    async def keys(self, request):
        if self.down:
            raise web.HTTPServiceUnavailable()
        self.fetches += 1
        return web.json_response({"keys": [s.jwk for s in self.signers]})


@pytest.fixture
async def issuer(aiohttp_server, signer):
    issuer = Issuer([signer])
    server = await aiohttp_server(issuer.app(), host="127.0.0.1")
    issuer.url = str(server.make_url("")).rstrip("/")
    return issuer


def _verifier(issuer, **kwargs):
    return OidcVerifier(issuer=issuer.url, audiences=[AUDIENCE], **kwargs)


async def test_keys_discovered_from_the_issuer(issuer, signer):
    verifier = _verifier(issuer)
    assert not verifier.offline
    token = signer.token("predict", iss=issuer.url)
    assert await verifier.scopes(token) == {Scope.PREDICT}
    assert issuer.fetches == 1
    other = signer.token("train", iss=issuer.url, jti="another")
    assert await verifier.scopes(other) == {Scope.TRAIN}
    assert issuer.fetches == 1  # cached


async def test_rotated_key_is_fetched_once_per_cooldown(
    issuer, signer, rsa_key, monkeypatch
):
    verifier = _verifier(issuer, jwks_uri=f"{issuer.url}/keys")
    assert await verifier.scopes(signer.token(iss=issuer.url)) == {Scope.PREDICT}
    rotated = Signer("key-2", rsa_key, "RS256")
    issuer.signers.append(rotated)
    # Within the cooldown, an unknown key id does not cause a fetch.
    with pytest.raises(AuthenticationFailed, match="unknown key"):
        await verifier.scopes(rotated.token(iss=issuer.url))
    assert issuer.fetches == 1
    monkeypatch.setattr(oidc, "REFRESH_COOLDOWN", 0)
    assert await verifier.scopes(rotated.token(iss=issuer.url, jti="x")) == {
        Scope.PREDICT
    }
    assert issuer.fetches == 2


async def test_issuer_down_is_503_then_recovers(issuer, signer, monkeypatch):
    monkeypatch.setattr(oidc, "FAILURE_BACKOFF", 0)
    verifier = _verifier(issuer)
    issuer.down = True
    with pytest.raises(IdentityProviderUnavailable):
        await verifier.scopes(signer.token(iss=issuer.url))
    issuer.down = False
    assert await verifier.scopes(signer.token(iss=issuer.url)) == {Scope.PREDICT}


async def test_issuer_down_answers_503_through_the_api(
    aiohttp_client, issuer, config, models, signer
):
    issuer.down = True
    config = config.replace(oidc_issuer=issuer.url, oidc_audience=(AUDIENCE,))
    client = await aiohttp_client(create_app(config, models))
    status, message, _ = await _status(client, signer.token(iss=issuer.url))
    assert status == 503
    assert "retry later" in message


async def test_token_without_key_id_needs_a_single_key(tmp_path, signer):
    token = jwt.encode(
        {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": int(time.time()) + 60,
            "scope": "train",
        },
        signer.key,
        algorithm="RS256",
    )
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"keys": [signer.jwk]}))
    verifier = OidcVerifier(issuer=ISSUER, audiences=[AUDIENCE], jwks_file=str(single))
    assert verifier.offline
    assert await verifier.scopes(token) == {Scope.TRAIN}
    two = tmp_path / "two.json"
    other = Signer("key-2", signer.key, "RS256")
    two.write_text(json.dumps({"keys": [signer.jwk, other.jwk]}))
    verifier = OidcVerifier(issuer=ISSUER, audiences=[AUDIENCE], jwks_file=str(two))
    with pytest.raises(AuthenticationFailed, match="unknown key"):
        await verifier.scopes(token)


async def test_discovery_without_jwks_uri_is_503(aiohttp_server, signer):
    hits = []

    async def discovery(request):
        hits.append(1)
        return web.json_response({"issuer": "somewhere"})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    server = await aiohttp_server(app, host="127.0.0.1")
    url = str(server.make_url("")).rstrip("/")
    verifier = OidcVerifier(issuer=url, audiences=[AUDIENCE])
    with pytest.raises(IdentityProviderUnavailable):
        await verifier.scopes(signer.token(iss=url))
    # Within the back-off, the next token is answered at once, without a fetch.
    with pytest.raises(IdentityProviderUnavailable):
        await verifier.scopes(signer.token(iss=url, jti="again"))
    assert len(hits) == 1
