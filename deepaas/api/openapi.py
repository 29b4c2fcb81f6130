"""Build the API's descriptions: OpenAPI 3.1 and, for 2.x clients, Swagger 2.0.

Each model gets its own paths (``/v2/models/<name>/predict/``), as in 2.x, since
each has its own arguments. A model's response schema becomes the component
``ModelPredictionResponse`` for the first model that declares one, and
``ModelPredictionResponse-<model>`` for the others (names made safe and unique).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import Schema, fields

from deepaas.api import _spec_fields as sf
from deepaas.api import health, schemas, versions
from deepaas.api.media import is_json
from deepaas.api.metrics import handle_metrics
from deepaas.api.security.access import PUBLIC, Scope, access_of
from deepaas.api.v2 import debug, models, predict, train
from deepaas.config import Config
from deepaas.model import _fields
from deepaas.model.v2.wrapper import ACCEPT, JSON, ModelWrapper

__all__ = ["BEARER", "build_openapi", "build_swagger"]

_DOCS_URL = "https://deepaas.readthedocs.io/"
_TAGS = (
    {"name": "versions", "description": "API versions"},
    {"name": "models", "description": "Models: metadata, predictions, trainings"},
    {"name": "debug", "description": "Server output, for model authors"},
    {"name": "operations", "description": "Probes and metrics, for operators"},
)
_FAILURES = {
    "400": "Malformed request body",
    "404": "Not found",
    "413": "Request body too large",
    "415": "Request body of an unsupported media type",
    "422": "Invalid arguments",
    "500": "Server or model failure",
    "501": "The model does not implement this method",
    "401": "No valid bearer token",
    "403": "The token lacks the scope this operation needs",
}
# The security scheme's name in both documents, when authentication is on.
BEARER = "bearerAuth"
_BEARER_TEXT = (
    "A bearer token: a static token of the server or an access token (JWT) of "
    "its OpenID Connect issuer. Each operation says which scope it needs; "
    "'admin' grants every scope."
)
_BINARY = {"type": "string", "format": "binary"}
_CALL_FAILURES = ("400", "413", "415", "422", "500", "501")
_COMPONENTS: tuple[tuple[str, type[Schema]], ...] = (
    ("Location", schemas.Location),
    ("Version", schemas.Version),
    ("Versions", schemas.Versions),
    ("Failure", schemas.Failure),
    ("ValidationFailure", schemas.ValidationFailure),
    ("Prediction", schemas.Prediction),
    ("ModelMeta", schemas.ModelMeta),
    ("ModelList", schemas.ModelList),
    ("Training", schemas.Training),
)


def build_openapi(
    config: Config,
    models: Mapping[str, ModelWrapper],
    *,
    title: str,
    version: str,
    description: str,
) -> dict[str, Any]:
    """Describe the API as an OpenAPI 3.1.0 document.

    Arguments of ``predict``/``train`` are a request body (multipart; also
    urlencoded and JSON when there is no file) and, except files and objects, the
    same names as optional query parameters, since the server reads both.

    Args:
        config: Which endpoints exist, and the base path.
        models: The served models, by name.
        title: Title of the API.
        version: Version of the API (deepaas's).
        description: Markdown introduction.
    """
    return _Builder("3.1.0", config, models, title, version, description).build()


def build_swagger(
    config: Config,
    models: Mapping[str, ModelWrapper],
    *,
    title: str,
    version: str,
    description: str,
) -> dict[str, Any]:
    """Describe the API as a Swagger 2.0 document, shaped as 2.x clients read it.

    Arguments are query parameters, files ``formData`` parameters of type ``file``
    and ``accept`` a header; every predict operation lists what it ``produces``.

    Args:
        config: Which endpoints exist, and the base path.
        models: The served models, by name.
        title: Title of the API.
        version: Version of the API (deepaas's).
        description: Markdown introduction.
    """
    return _Builder("2.0", config, models, title, version, description).build()


# OpenAPI 3.1 cannot describe a stream as a whole; validators read the schema of
# an event stream as that of each event (what 3.2 calls ``itemSchema``).
_LOG_EVENT: dict[str, Any] = {
    "type": "object",
    "description": (
        "One event: a line the training printed (a 'message' event), then an "
        "'end' event whose data is the final status"
    ),
    "properties": {
        "event": {"type": "string", "enum": ["message", "end"]},
        "data": {"type": "string"},
    },
    "required": ["data"],
}


class _Builder:
    """Everything one document needs while it is built (one per document)."""

    def __init__(
        self,
        openapi_version: str,
        config: Config,
        models: Mapping[str, ModelWrapper],
        title: str,
        version: str,
        description: str,
    ) -> None:
        self.v3 = openapi_version.startswith("3")
        self.config = config
        self.models = models
        self.names = sf.Names()
        tokens = sf.Names()
        self.tokens = {name: tokens.claim(name) for name in models}
        plugin = MarshmallowPlugin(schema_name_resolver=self.names.resolver)
        self.spec = APISpec(
            title=title,
            version=version,
            openapi_version=openapi_version,
            plugins=[plugin],
            info={"description": description},
            externalDocs={"description": "API documentation", "url": _DOCS_URL},
        )
        assert plugin.converter is not None
        self.converter: OpenAPIConverter = plugin.converter
        if not self.v3:
            # As 2.x documents said; generators read int32/float as int/float.
            self.converter.field_mapping = {
                **self.converter.field_mapping,
                fields.Integer: ("integer", "int32"),
                fields.Float: ("number", "float"),
            }
        for tag in _TAGS:
            if tag["name"] != "debug" or config.debug_endpoint:
                self.spec.tag(dict(tag))
        if config.auth_enabled:
            self.spec.components.security_scheme(BEARER, self.bearer_scheme())

    def bearer_scheme(self) -> dict[str, Any]:
        if self.v3:
            return {"type": "http", "scheme": "bearer", "description": _BEARER_TEXT}
        # Swagger 2.0 has no bearer scheme: the header itself, "Bearer <token>".
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": _BEARER_TEXT + " Enter it as 'Bearer <token>'.",
        }

    # Helpers ------------------------------------------------------------------

    def ref(self, name: str) -> dict[str, Any]:
        return dict(self.spec.components.get_ref("schema", name))

    def response(
        self, text: str, schema: dict[str, Any] | None, media: str = JSON
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {"description": text}
        if schema is not None:
            if self.v3:
                answer["content"] = {media: {"schema": schema}}
            else:
                answer["schema"] = schema
        return answer

    def failures(self, *codes: str) -> dict[str, Any]:
        return {
            code: self.response(
                _FAILURES[code],
                self.ref("ValidationFailure" if code == "422" else "Failure"),
            )
            for code in codes
        }

    def operation(
        self,
        tag: str,
        summary: str,
        op_id: str,
        responses: dict[str, Any],
        handler: Callable[..., Any],
    ) -> dict[str, Any]:
        op: dict[str, Any] = {
            "tags": [tag],
            "summary": summary,
            "operationId": op_id,
            "responses": responses,
        }
        if not self.v3:
            op["produces"] = [JSON]
        self.secure(op, handler)
        return op

    def secure(self, op: dict[str, Any], handler: Callable[..., Any]) -> None:
        """Add what ``handler``'s route needs when authentication is on."""
        if not self.config.auth_enabled:
            return
        access = access_of(handler) or Scope.ADMIN
        if access is PUBLIC:
            op["security"] = []
            return
        assert isinstance(access, Scope)
        op["description"] = f"Needs a bearer token with the '{access.value}' scope."
        # OpenAPI 3.1 may list roles for an http scheme; Swagger 2.0 may not.
        op["security"] = [{BEARER: [access.value] if self.v3 else []}]
        op["responses"].update(self.failures("401", "403"))

    # Components ---------------------------------------------------------------

    def add_components(self) -> dict[str, str]:
        for name, schema in _COMPONENTS:
            self.spec.components.schema(self.names.claim(name), schema=schema)
        self.spec.components.schema(
            self.names.claim("TrainingList"),
            component={"type": "array", "items": self.ref("Training")},
        )
        responses: dict[str, str] = {}
        registered: dict[type[Any], str] = {}
        for model_name, model in self.models.items():
            cls = model.response_schema
            if cls is None:
                continue
            if cls not in registered:
                wanted = "ModelPredictionResponse"
                if registered:
                    wanted += f"-{self.tokens[model_name]}"
                registered[cls] = self.names.claim(wanted)
                self.spec.components.schema(registered[cls], schema=cls)
            responses[model_name] = registered[cls]
        return responses

    # Paths --------------------------------------------------------------------

    def get(
        self,
        path: str,
        tag: str,
        summary: str,
        op_id: str,
        answer: str,
        handler: Callable[..., Any],
    ) -> None:
        ok = {"200": self.response(summary, self.ref(answer))}
        op = self.operation(tag, summary, op_id, ok, handler)
        self.spec.path(path=path, operations={"get": op})

    def build(self) -> dict[str, Any]:
        bp = self.config.base_path
        responses = self.add_components()
        self.get(
            f"{bp}/",
            "versions",
            "Get available API versions",
            "get_versions",
            "Versions",
            versions.root,
        )
        self.get(
            f"{bp}/v2/",
            "versions",
            "Get V2 API version information",
            "get_v2_version",
            "Version",
            versions.v2_version,
        )
        self.get(
            f"{bp}/v2/models/",
            "models",
            "Return loaded models and their information",
            "list_models",
            "ModelList",
            models.index,
        )
        for name, model in self.models.items():
            self.model_paths(f"{bp}/v2/models/{quote(name, safe='')}", model, responses)
        if self.config.debug_endpoint:
            op = self.operation(
                "debug",
                "Return what the server printed and logged",
                "get_debug",
                {
                    "200": self.response(
                        "Captured output", {"type": "string"}, "text/plain"
                    )
                },
                debug.debug,
            )
            if not self.v3:
                op["produces"] = ["text/plain"]
            self.spec.path(path=f"{bp}/v2/debug/", operations={"get": op})
        self.operation_paths(bp)
        document = self.spec.to_dict()
        section = document.get("components", {}) if self.v3 else document
        for schema in section.get("schemas" if self.v3 else "definitions", {}).values():
            sf.clean_schema(schema)
        return document

    def operation_paths(self, bp: str) -> None:
        """``/healthz``, ``/readyz`` and, when served, ``/metrics``."""
        status = {
            "type": "object",
            "properties": {"status": {"type": "string"}},
            "required": ["status"],
        }
        not_ready = {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "reasons": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["message", "reasons"],
        }
        alive = self.operation(
            "operations",
            "Liveness: the server answers",
            "get_healthz",
            {"200": self.response("The server is alive", status)},
            health.alive,
        )
        ready = self.operation(
            "operations",
            "Readiness: every model is loaded, warmed and has its workers",
            "get_readyz",
            {
                "200": self.response("Ready to serve", status),
                "503": self.response("Not ready, and why", not_ready),
            },
            health.ready,
        )
        self.spec.path(path=f"{bp}/healthz", operations={"get": alive})
        self.spec.path(path=f"{bp}/readyz", operations={"get": ready})
        if self.config.metrics_endpoint:
            text = "text/plain"
            op = self.operation(
                "operations",
                "Prometheus metrics",
                "get_metrics",
                {"200": self.response("Metrics", {"type": "string"}, text)},
                handle_metrics,
            )
            if not self.v3:
                op["produces"] = [text]
            self.spec.path(path=f"{bp}/metrics", operations={"get": op})

    def model_paths(
        self, base: str, model: ModelWrapper, responses: Mapping[str, str]
    ) -> None:
        token = self.tokens[model.name]
        self.get(
            f"{base}/",
            "models",
            "Return model's metadata",
            f"get_model_{token}",
            "ModelMeta",
            models.show,
        )
        if self.config.predict_endpoint:
            schema_name = responses.get(model.name)
            self.spec.path(
                path=f"{base}/predict/",
                operations={"post": self.predict(model, token, schema_name)},
            )
        if self.config.train_endpoint:
            self.train_paths(base, model, token)

    def predict(
        self, model: ModelWrapper, token: str, schema_name: str | None
    ) -> dict[str, Any]:
        answer = self.ref(schema_name or "Prediction")
        choices = list(model.accept_choices or [])
        args = {
            n: f
            for n, f in model.predict_fields.items()
            if not (choices and n == ACCEPT)
        }
        ok: dict[str, Any] = {"description": "The prediction"}
        if self.v3:
            ok["content"] = {
                media: {"schema": answer if is_json(media) else dict(_BINARY)}
                for media in choices or [JSON]
            }
        else:
            ok["schema"] = answer
        op = self.operation(
            "models",
            "Make a prediction given the input data",
            f"predict_{token}",
            {"200": ok, **self.failures(*_CALL_FAILURES)},
            predict.predict,
        )
        self.add_arguments(op, args, f"PredictArguments-{token}")
        if choices:
            self.add_accept(op, model, choices)
        return op

    def add_accept(
        self, op: dict[str, Any], model: ModelWrapper, choices: list[str]
    ) -> None:
        text = _fields.description(model.predict_fields[ACCEPT])
        if self.v3:
            op.setdefault("parameters", []).append(sf.openapi_accept(choices, text))
            return
        param = sf.swagger_accept(choices, text)
        op["parameters"].append(param)
        op["produces"] = list(param["enum"])

    def add_arguments(
        self, op: dict[str, Any], args: _fields.FieldMap, component: str
    ) -> None:
        if not self.v3:
            op["parameters"] = [
                sf.swagger_parameter(self.converter, n, f) for n, f in args.items()
            ]
            if any(_fields.is_file(f) for f in args.values()):
                op["consumes"] = ["multipart/form-data"]
            return
        if not args:
            return
        properties: dict[str, Any] = {}
        params: list[dict[str, Any]] = []
        for name, field in args.items():
            if _fields.is_file(field):
                properties[name] = sf.file_schema(field)
                continue
            value = sf.value_schema(self.converter, field)
            properties[name] = value
            if sf.is_scalar(value):
                params.append(sf.query_parameter(name, value))
        body: dict[str, Any] = {"type": "object", "properties": properties}
        required = [n for n, f in args.items() if f.required]
        if required:
            body["required"] = required
        name = self.names.claim(component)
        self.spec.components.schema(name, component=body)
        media = ["multipart/form-data"]
        has_files = any(_fields.is_file(f) for f in args.values())
        if not has_files:
            media += ["application/x-www-form-urlencoded", JSON]
        op["requestBody"] = {
            "required": any(f.required and _fields.is_file(f) for f in args.values()),
            "content": {m: {"schema": self.ref(name)} for m in media},
        }
        if params:
            op["parameters"] = params

    def train_paths(self, base: str, model: ModelWrapper, token: str) -> None:
        start = self.operation(
            "models",
            "Retrain model with available data",
            f"train_{token}",
            {
                "200": self.response("The training, started", self.ref("Training")),
                **self.failures(*_CALL_FAILURES),
            },
            train.start,
        )
        self.add_arguments(start, model.train_fields, f"TrainArguments-{token}")
        listing = self.operation(
            "models",
            "Get a list of trainings (running or completed)",
            f"list_trainings_{token}",
            {"200": self.response("The trainings", self.ref("TrainingList"))},
            train.index,
        )
        self.spec.path(
            path=f"{base}/train/", operations={"post": start, "get": listing}
        )
        uuid: dict[str, Any] = {"in": "path", "name": "uuid", "required": True}
        if self.v3:
            uuid["schema"] = {"type": "string"}
        else:
            uuid["type"] = "string"
        operations: dict[str, Any] = {}
        for method, summary, op_id, text, handler in (
            (
                "get",
                "Get status of a training",
                "get_training",
                "The training",
                train.show,
            ),
            (
                "delete",
                "Cancel a queued or running training; remove a finished one",
                "cancel_training",
                "The cancelled or removed training",
                train.delete,
            ),
        ):
            op = self.operation(
                "models",
                summary,
                f"{op_id}_{token}",
                {
                    "200": self.response(text, self.ref("Training")),
                    **self.failures("404"),
                },
                handler,
            )
            op["parameters"] = [dict(uuid)]
            operations[method] = op
        self.spec.path(path=f"{base}/train/{{uuid}}", operations=operations)
        self.spec.path(
            path=f"{base}/train/{{uuid}}/logs",
            operations={"get": self.logs_operation(token, uuid)},
        )

    def logs_operation(self, token: str, uuid: dict[str, Any]) -> dict[str, Any]:
        text = {"type": "string"}
        ok = self.response("What the training printed", text, "text/plain")
        if self.v3:
            ok["content"]["text/event-stream"] = {"schema": _LOG_EVENT}
        op = self.operation(
            "models",
            "Get the output of a training; follow it as Server-Sent Events",
            f"get_training_logs_{token}",
            {"200": ok, **self.failures("404")},
            train.logs,
        )
        follow: dict[str, Any] = {
            "in": "query",
            "name": "follow",
            "required": False,
            "description": "Stream new lines as Server-Sent Events until the end",
        }
        if self.v3:
            follow["schema"] = {"type": "boolean", "default": False}
        else:
            follow.update(type="boolean", default=False)
            op["produces"] = ["text/plain", "text/event-stream"]
        op["parameters"] = [dict(uuid), follow]
        return op
