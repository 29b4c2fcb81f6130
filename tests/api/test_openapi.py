"""The OpenAPI 3.1 and Swagger 2.0 documents built from model declarations."""

import datetime
import json
import re
from pathlib import Path

import pytest
from marshmallow import Schema, fields, validate
from openapi_spec_validator import (
    OpenAPIV2SpecValidator,
    OpenAPIV31SpecValidator,
)
from openapi_spec_validator import (
    validate as validate_spec,
)

from deepaas.api.openapi import build_openapi, build_swagger
from deepaas.config import Config
from deepaas.model import _compat, load_models
from deepaas.model.loading import wrap

# 2.x keywords (missing=, description=, location=) must import under marshmallow 4.
_compat.install()

INFO = {"title": "Test API", "version": "9.9", "description": "For tests"}
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class LegacyStyle:
    """Declared as a 2.x module author would: free keywords on every field."""

    @staticmethod
    def get_metadata():
        return {"name": "legacy-style"}

    @staticmethod
    def get_predict_args():
        return {
            "count": fields.Int(
                missing=3,
                validate=validate.Range(min=1, max=9),
                description="How many",
            ),
            "choice": fields.Str(
                missing="a", validate=validate.OneOf(["a", "b"]), description="Pick"
            ),
            "mode": fields.Str(enum=["fast", "slow"], description="Declared enum"),
            "numbers": fields.List(fields.Int(), description="Some integers"),
            "flag": fields.Bool(missing=False, description="A flag"),
            "when": fields.Raw(missing=datetime.date(2020, 1, 2)),
            "image": fields.Field(
                type="file", location="form", required=True, description="An image"
            ),
            "accept": fields.Str(
                location="headers",
                missing="application/json",
                validate=validate.OneOf(["application/json", "image/png"]),
                description="Answer type",
            ),
        }

    @staticmethod
    def predict(**kwargs):
        return kwargs

    @staticmethod
    def get_train_args():
        return {"epochs": fields.Int(missing=1, description="Epochs")}

    @staticmethod
    def train(**kwargs):
        return {}


class Box(Schema):
    x = fields.Int(required=True)
    y = fields.Int(required=True)


class Answer(Schema):
    label = fields.Str(required=True, metadata={"description": "The label"})
    boxes = fields.List(fields.Nested(Box))


class ModernStyle:
    """Declared with marshmallow 4 idioms, with a Schema response."""

    schema = Answer

    def get_predict_args(self):
        return {
            "text": fields.Str(required=True, metadata={"description": "Input"}),
            "ratio": fields.Float(
                load_default=0.5,
                validate=validate.Range(min=0, max=1, min_inclusive=False),
            ),
            "options": fields.Dict(metadata={"description": "Free options"}),
        }

    def predict(self, **kwargs):
        return {"label": "x"}


class DictSchema:
    """A second model with a response schema, given as a dict of fields."""

    schema = {"total": fields.Int(required=True)}

    @staticmethod
    def predict(**kwargs):
        return {"total": 1}


@pytest.fixture(scope="module")
def models():
    return {
        "legacy": wrap("legacy", LegacyStyle),
        "modern": wrap("modern", ModernStyle),
        "dict.model": wrap("dict.model", DictSchema),
    }


def _build(models, **config):
    cfg = Config(**config)
    return build_openapi(cfg, models, **INFO), build_swagger(cfg, models, **INFO)


@pytest.fixture(scope="module")
def docs(models):
    return _build(models, debug_endpoint=True)


@pytest.fixture(scope="module")
def openapi(docs):
    return docs[0]


@pytest.fixture(scope="module")
def swagger(docs):
    return docs[1]


def _params(operation):
    return {p["name"]: p for p in operation.get("parameters", [])}


# --- Both documents ------------------------------------------------------------------


def test_documents_are_valid(openapi, swagger):
    assert openapi["openapi"] == "3.1.0"
    assert swagger["swagger"] == "2.0"
    validate_spec(openapi, cls=OpenAPIV31SpecValidator)
    validate_spec(swagger, cls=OpenAPIV2SpecValidator)
    json.dumps(openapi, allow_nan=False)
    json.dumps(swagger, allow_nan=False)


def test_info(openapi, swagger):
    for doc in (openapi, swagger):
        assert doc["info"] == INFO
        tags = {t["name"] for t in doc["tags"]}
        assert tags == {"versions", "models", "debug", "operations"}


def test_every_route_is_described(openapi, swagger):
    expected = {"/", "/v2/", "/v2/models/", "/v2/debug/"}
    expected |= {"/healthz", "/readyz", "/metrics"}
    for model in ("legacy", "modern", "dict.model"):
        base = f"/v2/models/{model}"
        expected |= {f"{base}/", f"{base}/predict/", f"{base}/train/"}
        expected |= {f"{base}/train/{{uuid}}", f"{base}/train/{{uuid}}/logs"}
    for doc in (openapi, swagger):
        assert set(doc["paths"]) == expected
        train = doc["paths"]["/v2/models/legacy/train/"]
        assert set(train) == {"get", "post"}
        logs = doc["paths"]["/v2/models/legacy/train/{uuid}/logs"]
        assert [p["name"] for p in logs["get"]["parameters"]] == ["uuid", "follow"]
        assert set(doc["paths"]["/v2/models/legacy/train/{uuid}"]) == {"get", "delete"}
        assert set(doc["paths"]["/v2/models/legacy/predict/"]) == {"post"}


def test_operation_ids_are_unique(openapi):
    ids = [
        op["operationId"] for item in openapi["paths"].values() for op in item.values()
    ]
    assert len(ids) == len(set(ids))


def test_base_path(models):
    openapi, swagger = _build(models, base_path="/deepaas/")
    for doc in (openapi, swagger):
        assert all(path.startswith("/deepaas/") for path in doc["paths"])
        assert "/deepaas/v2/models/legacy/predict/" in doc["paths"]
        assert "/deepaas/" in doc["paths"]


@pytest.mark.parametrize(
    ("flag", "marker"),
    [
        ("predict_endpoint", "/predict/"),
        ("train_endpoint", "/train/"),
        ("debug_endpoint", "/debug/"),
        ("metrics_endpoint", "/metrics"),
    ],
)
def test_disabled_endpoints_are_absent(models, flag, marker):
    for doc in _build(models, **{flag: False}):
        assert not [p for p in doc["paths"] if marker in p]
        assert "/v2/models/legacy/" in doc["paths"]


# --- Swagger 2.0, as 2.x clients read it ---------------------------------------------


def test_swagger_predict_parameters(swagger):
    op = swagger["paths"]["/v2/models/legacy/predict/"]["post"]
    params = _params(op)
    assert params["count"] == {
        "in": "query",
        "name": "count",
        "required": False,
        "type": "integer",
        "format": "int32",
        "default": 3,
        "minimum": 1,
        "maximum": 9,
        "description": "How many",
    }
    assert params["choice"]["enum"] == ["a", "b"]
    assert params["choice"]["default"] == "a"
    assert params["mode"]["enum"] == ["fast", "slow"]
    assert params["flag"]["type"] == "boolean"
    assert params["flag"]["default"] is False
    assert params["numbers"]["type"] == "array"
    assert params["numbers"]["items"] == {"type": "integer", "format": "int32"}
    assert params["numbers"]["collectionFormat"] == "multi"
    assert "default" not in params["numbers"]
    for name in ("count", "choice", "mode", "numbers", "flag", "when"):
        assert params[name]["in"] == "query"


def test_swagger_file_argument(swagger):
    op = swagger["paths"]["/v2/models/legacy/predict/"]["post"]
    assert _params(op)["image"] == {
        "in": "formData",
        "name": "image",
        "required": True,
        "type": "file",
        "description": "An image",
    }
    assert op["consumes"] == ["multipart/form-data"]
    assert "consumes" not in swagger["paths"]["/v2/models/modern/predict/"]["post"]


def test_swagger_accept_and_produces(swagger):
    op = swagger["paths"]["/v2/models/legacy/predict/"]["post"]
    accept = _params(op)["accept"]
    assert accept["in"] == "header"
    assert accept["default"] == "application/json"
    assert accept["enum"] == ["application/json", "image/png", "*/*"]
    assert accept["description"] == "Answer type"
    assert op["produces"] == ["application/json", "image/png", "*/*"]
    for model in ("modern", "dict.model"):
        other = swagger["paths"][f"/v2/models/{model}/predict/"]["post"]
        assert other["produces"] == ["application/json"]
        assert "accept" not in _params(other)


def test_swagger_defaults_are_json(swagger):
    params = _params(swagger["paths"]["/v2/models/legacy/predict/"]["post"])
    # A date is not JSON: no default rather than a wrong one.
    assert "default" not in params["when"]
    assert params["when"]["type"] == "string"


def test_swagger_object_argument_is_text(swagger):
    params = _params(swagger["paths"]["/v2/models/modern/predict/"]["post"])
    assert params["options"]["type"] == "string"
    assert params["text"]["required"] is True
    assert params["ratio"]["exclusiveMinimum"] is True


def test_swagger_response_schemas(swagger):
    defs = swagger["definitions"]
    assert set(defs["ModelPredictionResponse"]["properties"]) == {"label", "boxes"}
    assert set(defs["ModelPredictionResponse-dict.model"]["properties"]) == {"total"}
    paths = swagger["paths"]

    def ok(model):
        return paths[f"/v2/models/{model}/predict/"]["post"]["responses"]["200"]

    assert ok("modern")["schema"] == {"$ref": "#/definitions/ModelPredictionResponse"}
    assert ok("dict.model")["schema"] == {
        "$ref": "#/definitions/ModelPredictionResponse-dict.model"
    }
    assert ok("legacy")["schema"] == {"$ref": "#/definitions/Prediction"}


def test_swagger_train(swagger):
    item = swagger["paths"]["/v2/models/legacy/train/"]
    assert _params(item["post"])["epochs"]["default"] == 1
    listing = item["get"]["responses"]["200"]["schema"]
    assert listing == {"$ref": "#/definitions/TrainingList"}
    assert swagger["definitions"]["TrainingList"]["type"] == "array"


# --- OpenAPI 3.1 ----------------------------------------------------------------------


def test_component_names_are_valid(openapi):
    for name in openapi["components"]["schemas"]:
        assert NAME.match(name), name


def test_openapi_predict_with_file(openapi):
    op = openapi["paths"]["/v2/models/legacy/predict/"]["post"]
    content = op["requestBody"]["content"]
    assert list(content) == ["multipart/form-data"]
    ref = content["multipart/form-data"]["schema"]["$ref"]
    body = openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]
    image = body["properties"]["image"]
    assert image["type"] == "string"
    assert image["format"] == "binary"
    assert image["contentMediaType"] == "application/octet-stream"
    assert body["required"] == ["image"]
    assert "accept" not in body["properties"]
    assert body["properties"]["count"]["minimum"] == 1


def test_openapi_query_parameters(openapi):
    params = _params(openapi["paths"]["/v2/models/legacy/predict/"]["post"])
    assert params["count"]["in"] == "query"
    assert params["count"]["required"] is False
    assert params["count"]["schema"] == {
        "type": "integer",
        "default": 3,
        "minimum": 1,
        "maximum": 9,
    }
    assert params["choice"]["schema"]["enum"] == ["a", "b"]
    assert params["numbers"]["schema"]["items"] == {"type": "integer"}
    assert "image" not in params


def test_openapi_accept_header(openapi):
    op = openapi["paths"]["/v2/models/legacy/predict/"]["post"]
    accept = _params(op)["Accept"]
    assert accept["in"] == "header"
    assert accept["schema"]["enum"] == ["application/json", "image/png"]
    ok = op["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Prediction"
    }
    assert ok["image/png"]["schema"] == {"type": "string", "format": "binary"}
    assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationFailure"
    }
    for code in ("400", "500", "501"):
        schema = op["responses"][code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Failure"}


def test_openapi_predict_without_file(openapi):
    op = openapi["paths"]["/v2/models/modern/predict/"]["post"]
    assert set(op["requestBody"]["content"]) == {
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "application/json",
    }
    params = _params(op)
    assert "options" not in params  # objects travel in a body only
    assert params["ratio"]["schema"]["exclusiveMinimum"] == 0
    ok = op["responses"]["200"]["content"]
    assert ok == {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/ModelPredictionResponse"}
        }
    }


def test_openapi_training(openapi):
    schemas = openapi["components"]["schemas"]
    status = schemas["Training"]["properties"]["status"]
    assert "done" in status["enum"]
    assert "completed" not in status["enum"]
    for name in ("created", "started", "finished", "duration"):
        assert name in schemas["Training"]["properties"]
    uuid = _params(openapi["paths"]["/v2/models/legacy/train/{uuid}"]["delete"])
    assert uuid["uuid"]["in"] == "path"
    assert schemas["ModelMeta"]["additionalProperties"] is True


# --- Against DEEPaaS 2.6.0's own documents --------------------------------------------

REFERENCE = Path(__file__).parents[1] / "fixtures" / "reference"


@pytest.mark.parametrize(
    ("reference", "served_as", "name"),
    [
        ("swagger-legacy.json", "legacy", "legacy"),
        ("swagger-static.json", "static", "static"),
        ("swagger-modern-as-instance.json", "modinst", "modern"),
    ],
)
def test_swagger_arguments_match_2_6_0(reference, served_as, name):
    expected = json.loads((REFERENCE / reference).read_text())["paths"]
    swagger = build_swagger(Config(), load_models([name]), **INFO)
    for suffix, method in (("predict/", "post"), ("train/", "post")):
        want = expected[f"/v2/models/{served_as}/{suffix}"][method]
        got = swagger["paths"][f"/v2/models/{name}/{suffix}"][method]
        assert got["parameters"] == want["parameters"]
        assert got["produces"] == want["produces"]


def _tags(config):
    from deepaas.api.openapi import build_openapi

    spec = build_openapi(config, {}, title="t", version="1", description="d")
    return [tag["name"] for tag in spec["tags"]]


def test_debug_tag_only_with_the_debug_endpoint():
    from deepaas.config import Config

    assert "debug" not in _tags(Config())
    assert "debug" in _tags(Config(debug_endpoint=True))


def test_operations_are_described(openapi, swagger):
    for doc in (openapi, swagger):
        ready = doc["paths"]["/readyz"]["get"]
        assert set(ready["responses"]) == {"200", "503"}
        assert ready["tags"] == ["operations"]
        assert set(doc["paths"]["/healthz"]["get"]["responses"]) == {"200"}
    assert (
        "text/plain"
        in openapi["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    )
    assert swagger["paths"]["/metrics"]["get"]["produces"] == ["text/plain"]
