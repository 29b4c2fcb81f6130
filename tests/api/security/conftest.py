"""Tokens, keys and applications with authentication on."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from deepaas.api import create_app

PREDICT_TOKEN = "predict-token-0123456789"
TRAIN_TOKEN = "train-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"

ISSUER = "https://issuer.example.org/realms/deepaas"
AUDIENCE = "deepaas-api"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(
        "# token  scopes\n"
        f"{PREDICT_TOKEN} predict\n"
        f"{TRAIN_TOKEN}   train\n"
        "\n"
        f"{ADMIN_TOKEN} admin\n"
    )
    return path


@pytest.fixture
def auth_config(config, token_file):
    return config.replace(auth_token_file=str(token_file), debug_endpoint=True)


@pytest.fixture
async def auth_client(aiohttp_client, auth_config, models):
    return await aiohttp_client(create_app(auth_config, models))


# --- OpenID Connect -----------------------------------------------------------------


class Signer:
    """A private key and its public JWK, to issue tokens as an issuer would."""

    def __init__(self, kid, key, algorithm):
        self.kid = kid
        self.key = key
        self.algorithm = algorithm

    @property
    def jwk(self):
        to_jwk = (
            RSAAlgorithm if self.algorithm.startswith(("RS", "PS")) else ECAlgorithm
        )
        jwk = to_jwk.to_jwk(self.key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def token(self, scope="predict", *, headers=None, **claims):
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "someone",
            "iat": now,
            "exp": now + 300,
            "scope": scope,
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(
            payload,
            self.key,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )


@pytest.fixture(scope="session")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def signer(rsa_key):
    return Signer("key-1", rsa_key, "RS256")


@pytest.fixture
def ec_signer():
    return Signer("key-ec", ec.generate_private_key(ec.SECP256R1()), "ES256")


@pytest.fixture
def jwks_file(tmp_path, signer, ec_signer):
    import json

    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [signer.jwk, ec_signer.jwk]}))
    return path


@pytest.fixture
def oidc_config(config, jwks_file):
    return config.replace(
        oidc_issuer=ISSUER, oidc_audience=(AUDIENCE,), oidc_jwks_file=str(jwks_file)
    )


@pytest.fixture
async def oidc_client(aiohttp_client, oidc_config, models):
    return await aiohttp_client(create_app(oidc_config, models))
