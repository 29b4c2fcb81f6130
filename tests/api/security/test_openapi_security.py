"""The bearer scheme in both API documents: there with auth on, absent with it off."""

import pytest
from openapi_spec_validator import OpenAPIV2SpecValidator, OpenAPIV31SpecValidator
from openapi_spec_validator import validate as validate_spec

from deepaas.api.openapi import BEARER, build_openapi, build_swagger
from deepaas.config import Config
from deepaas.model import load_models

INFO = {"title": "Test API", "version": "9.9", "description": "For tests"}
METHODS = {"get", "post", "delete"}


@pytest.fixture(scope="module")
def served():
    return load_models(["legacy", "modern"])


def _build(served, **config):
    cfg = Config(debug_endpoint=True, **config)
    return build_openapi(cfg, served, **INFO), build_swagger(cfg, served, **INFO)


def _operations(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def test_documents_with_auth_are_valid(served):
    openapi, swagger = _build(served, auth_tokens="t predict")
    validate_spec(openapi, cls=OpenAPIV31SpecValidator)
    validate_spec(swagger, cls=OpenAPIV2SpecValidator)
    assert openapi["components"]["securitySchemes"][BEARER] == {
        "type": "http",
        "scheme": "bearer",
        "description": openapi["components"]["securitySchemes"][BEARER]["description"],
    }
    scheme = swagger["securityDefinitions"][BEARER]
    assert (scheme["type"], scheme["in"], scheme["name"]) == (
        "apiKey",
        "header",
        "Authorization",
    )
    assert "Bearer <token>" in scheme["description"]


@pytest.mark.parametrize(
    ("path", "method", "scope"),
    [
        ("/", "get", None),
        ("/v2/", "get", None),
        ("/v2/models/", "get", "predict"),
        ("/v2/models/legacy/", "get", "predict"),
        ("/v2/models/legacy/predict/", "post", "predict"),
        ("/v2/models/legacy/train/", "post", "train"),
        ("/v2/models/legacy/train/", "get", "train"),
        ("/v2/models/legacy/train/{uuid}", "get", "train"),
        ("/v2/models/legacy/train/{uuid}", "delete", "train"),
        ("/v2/models/legacy/train/{uuid}/logs", "get", "train"),
        ("/v2/debug/", "get", "admin"),
    ],
)
def test_each_operation_names_its_scope(served, path, method, scope):
    openapi, swagger = _build(served, auth_tokens="t predict")
    v3 = openapi["paths"][path][method]
    v2 = swagger["paths"][path][method]
    if scope is None:
        assert v3["security"] == v2["security"] == []
        assert "401" not in v3["responses"]
        return
    assert v3["security"] == [{BEARER: [scope]}]
    assert v2["security"] == [{BEARER: []}]
    for op in (v3, v2):
        assert f"'{scope}' scope" in op["description"]
        assert {"401", "403"} <= set(op["responses"])


def test_every_operation_is_covered(served):
    openapi, swagger = _build(served, auth_tokens="t predict")
    for document in (openapi, swagger):
        for path, method, op in _operations(document):
            assert "security" in op, (path, method)


def test_without_auth_nothing_changes(served):
    plain = _build(served)
    assert _build(served, auth="none") == plain
    for document in plain:
        assert "securityDefinitions" not in document
        assert "securitySchemes" not in document.get("components", {})
        for _, _, op in _operations(document):
            assert "security" not in op
            assert "401" not in op["responses"]


async def test_served_documents_are_public_and_declare_the_scheme(auth_client):
    resp = await auth_client.get("/swagger.json")
    assert resp.status == 200
    assert BEARER in (await resp.json())["securityDefinitions"]
    resp = await auth_client.get("/openapi.json")
    assert BEARER in (await resp.json())["components"]["securitySchemes"]
