"""The application under non-default configurations and unusual models."""

import asyncio
import os

import aiohttp
import pytest
from marshmallow import fields, validate

from deepaas.api import create_app
from deepaas.config import Config
from deepaas.model import loading
from deepaas.model.v2.base import BaseModel
from deepaas.model.v2.wrapper import ReturnedFile


class Minimal(BaseModel):
    """Implements nothing: every call but metadata is 501."""


class Warmed:
    warmed = 0

    def warm(self):
        type(self).warmed += 1

    def predict(self, **kwargs):
        return {"warmed": type(self).warmed}


class AsyncModel:
    async def predict(self, **kwargs):
        await asyncio.sleep(0)
        return {"async": True}


class NumpyModel:
    def predict(self, **kwargs):
        import numpy as np

        return {"array": np.arange(3), "scalar": np.float32(0.5)}


class BadSchema:
    schema = {"label": fields.Str(required=True)}

    def predict(self, **kwargs):
        return {"wrong": 1}


class FileReturner:
    def get_predict_args(self):
        return {
            "accept": fields.Str(
                load_default="image/png",
                validate=validate.OneOf(["image/png", "application/json"]),
            ),
            "kind": fields.Str(load_default="returned"),
        }

    def predict(self, accept, kind):
        path = os.environ["DEEPAAS_TEST_FILE"]
        if kind == "path":
            return path
        if kind == "bytes":
            return b"raw-bytes"
        if kind == "json" and accept == "application/json":
            return {"ok": True}
        return ReturnedFile(name="out.png", filename=path, content_type="image/png")


def _app(config=None, **models):
    wrapped = {name: loading.wrap(name, obj) for name, obj in models.items()}
    return create_app(config or Config(), wrapped)


async def test_missing_methods_are_501(aiohttp_client):
    client = await aiohttp_client(_app(minimal=Minimal))
    resp = await client.post("/v2/models/minimal/predict/")
    assert resp.status == 501
    assert await resp.json() == {
        "message": "Model 'minimal' does not implement 'predict'"
    }
    resp = await client.get("/v2/models/minimal/")
    assert resp.status == 200
    assert "Could not load description" in (await resp.json())["description"]


async def test_train_missing_is_501(aiohttp_client):
    client = await aiohttp_client(_app(minimal=Minimal))
    resp = await client.post("/v2/models/minimal/train/")
    assert resp.status == 501


async def test_warm_runs_at_startup_unless_disabled(aiohttp_client):
    Warmed.warmed = 0
    client = await aiohttp_client(_app(warmed=Warmed))
    assert (await (await client.post("/v2/models/warmed/predict/")).json())[
        "predictions"
    ] == {"warmed": 1}
    Warmed.warmed = 0
    client = await aiohttp_client(_app(Config(warm=False), warmed=Warmed))
    assert (await (await client.post("/v2/models/warmed/predict/")).json())[
        "predictions"
    ] == {"warmed": 0}


async def test_coroutine_predict_is_awaited(aiohttp_client):
    client = await aiohttp_client(_app(a=AsyncModel))
    resp = await client.post("/v2/models/a/predict/")
    assert (await resp.json())["predictions"] == {"async": True}


async def test_numpy_values_are_json(aiohttp_client):
    client = await aiohttp_client(_app(np=NumpyModel))
    resp = await client.post("/v2/models/np/predict/")
    assert resp.status == 200
    assert (await resp.json())["predictions"] == {"array": [0, 1, 2], "scalar": 0.5}


async def test_response_not_matching_schema_is_500(aiohttp_client):
    client = await aiohttp_client(_app(bad=BadSchema))
    resp = await client.post("/v2/models/bad/predict/")
    assert resp.status == 500
    assert "label" in (await resp.json())["message"]


@pytest.mark.parametrize(
    ("kind", "content_type", "body"),
    [
        ("returned", "image/png", b"file-body"),
        ("path", "image/png", b"file-body"),
        ("bytes", "image/png", b"raw-bytes"),
    ],
)
async def test_file_results_are_streamed(
    aiohttp_client, tmp_path, monkeypatch, kind, content_type, body
):
    target = tmp_path / "result.png"
    target.write_bytes(b"file-body")
    monkeypatch.setenv("DEEPAAS_TEST_FILE", str(target))
    client = await aiohttp_client(_app(files=FileReturner))
    resp = await client.post(
        "/v2/models/files/predict/",
        params={"kind": kind},
        headers={"Accept": "image/png"},
    )
    assert resp.status == 200
    assert resp.content_type == content_type
    assert await resp.read() == body


async def test_first_accept_choice_is_the_default(
    aiohttp_client, tmp_path, monkeypatch
):
    monkeypatch.setenv("DEEPAAS_TEST_FILE", str(tmp_path / "x"))
    client = await aiohttp_client(_app(files=FileReturner))
    # No Accept header at all: the first declared choice.
    resp = await client.post(
        "/v2/models/files/predict/",
        params={"kind": "bytes"},
        skip_auto_headers=["Accept"],
    )
    assert resp.content_type == "image/png"
    resp = await client.post(
        "/v2/models/files/predict/", params={"kind": "json"}, headers={"Accept": "*/*"}
    )
    assert resp.content_type == "application/json"


async def test_base_path_applies_to_every_route(aiohttp_client):
    client = await aiohttp_client(_app(Config(base_path="/deepaas"), static=_static()))
    assert (await client.get("/deepaas/v2/models/")).status == 200
    assert (await client.get("/v2/models/")).status == 404
    body = await (await client.get("/deepaas/")).json()
    assert body["versions"][0]["links"][0]["href"] == "/deepaas/v2/"
    assert {link["href"] for link in body["links"]} == {
        "/deepaas/api",
        "/deepaas/swagger.json",
    }
    assert (await client.get("/deepaas/swagger.json")).status == 200


async def test_disabled_endpoints_are_absent(aiohttp_client):
    config = Config(predict_endpoint=False, train_endpoint=False)
    client = await aiohttp_client(_app(config, static=_static()))
    assert (await client.post("/v2/models/static/predict/")).status in (404, 405)
    assert (await client.post("/v2/models/static/train/")).status in (404, 405)
    assert (await client.get("/v2/models/static/")).status == 200


async def test_debug_endpoint_only_when_enabled(aiohttp_client):
    client = await aiohttp_client(_app(static=_static()))
    assert (await client.get("/v2/debug/")).status == 404
    client = await aiohttp_client(_app(Config(debug_endpoint=True), static=_static()))
    print("visible-in-debug")
    resp = await client.get("/v2/debug/")
    assert resp.status == 200
    assert "visible-in-debug" in await resp.text()


async def test_body_over_client_max_size_is_413(aiohttp_client):
    client = await aiohttp_client(_app(Config(client_max_size=1024), static=_static()))
    form = aiohttp.FormData()
    form.add_field("x", b"y" * 4096, filename="big.bin")
    resp = await client.post("/v2/models/static/predict/", data=form)
    assert resp.status == 413
    assert "1024" in (await resp.json())["message"]
    resp = await client.post("/v2/models/static/predict/", data={"x": "1" * 4096})
    assert resp.status == 413


def _static():
    from deepaas_fixture_modern import StaticModel

    return StaticModel


async def _finished(client, model, uuid):
    """The training's record once it has left ``queued``/``running`` (30 s max)."""
    for _ in range(300):
        body = await (await client.get(f"/v2/models/{model}/train/{uuid}")).json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"training {uuid} still {body['status']}")


class FileTrainer:
    def get_train_args(self):
        return {"data": fields.Field(required=True, metadata={"type": "file"})}

    def train(self, data):
        with open(data.filename, "rb") as handle:
            return {"size": len(handle.read()), "original": data.original_filename}


async def test_uploaded_training_file_lives_until_the_job_ends(aiohttp_client):
    client = await aiohttp_client(_app(trainer=FileTrainer))
    form = aiohttp.FormData()
    form.add_field("data", b"z" * 3000, filename="set.csv", content_type="text/csv")
    job = await (await client.post("/v2/models/trainer/train/", data=form)).json()
    assert job["args"]["data"] == {
        "name": "data",
        "content_type": "text/csv",
        "original_filename": "set.csv",
    }
    body = await _finished(client, "trainer", job["uuid"])
    assert body["status"] == "done", body
    assert body["result"]["output"] == {"size": 3000, "original": "set.csv"}


class ProgressTrainer:
    def train(self):
        from deepaas.model import progress

        progress.report(0.5, "half way", loss=0.7)
        progress.report(1.0, "done", loss=0.25, accuracy=0.9)
        return {"ok": True}


async def test_progress_reported_in_train_shows_in_the_record(aiohttp_client):
    client = await aiohttp_client(_app(trainer=ProgressTrainer))
    job = await (await client.post("/v2/models/trainer/train/")).json()
    assert job["progress"] is None
    body = await _finished(client, "trainer", job["uuid"])
    assert body["status"] == "done", body
    assert body["progress"] == {
        "fraction": 1.0,
        "message": "done",
        "metrics": {"loss": 0.25, "accuracy": 0.9},
    }
