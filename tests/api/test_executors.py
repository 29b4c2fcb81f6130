"""Predictions in worker processes, bounded queues and time limits, over HTTP.

The models are module-level classes so that spawned workers can import them.
"""

import asyncio
import os
import time

import aiohttp
import pytest
from aiohttp import web
from marshmallow import fields

from deepaas.api import create_app
from deepaas.config import Config
from deepaas.exceptions import ConfigurationError
from deepaas.model import loading
from deepaas.model.predictor import Predictor
from tests._processes import alive


class Worker:
    """Sleeps, writes a marker, or dies, as asked; answers with its pid."""

    warmed = 0

    def warm(self):
        type(self).warmed += 1

    def get_predict_args(self):
        return {
            "seconds": fields.Float(load_default=0.0),
            "marker": fields.Str(load_default=""),
            "exit": fields.Int(load_default=-1),
        }

    def predict(self, seconds, marker, exit):
        if marker:
            with open(marker, "w") as out:
                out.write(str(os.getpid()))
        if exit >= 0:
            os._exit(exit)
        time.sleep(seconds)
        return {
            "pid": os.getpid(),
            "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "warmed": type(self).warmed,
        }


class AsyncWorker:
    async def predict(self, **kwargs):
        await asyncio.sleep(0)
        return {"pid": os.getpid()}


def _app(config, model=Worker):
    wrapped = {"worker": loading.wrap("worker", model)}
    return create_app(config, wrapped)


async def _predict(client, **query):
    resp = await client.post("/v2/models/worker/predict/", params=query)
    body = await resp.json()
    return resp.status, body.get("predictions", body), resp.headers


async def test_process_workers_run_calls_at_once(aiohttp_client):
    config = Config(executor="process", workers=3)
    client = await aiohttp_client(_app(config))
    start = time.monotonic()
    answers = await asyncio.gather(*(_predict(client, seconds=1.5) for _ in range(3)))
    elapsed = time.monotonic() - start
    assert [status for status, _, _ in answers] == [200, 200, 200]
    pids = {body["pid"] for _, body, _ in answers}
    assert len(pids) == 3
    assert os.getpid() not in pids
    # Warmed once in each worker, never in the server.
    assert {body["warmed"] for _, body, _ in answers} == {1}
    assert Worker.warmed == 0
    assert elapsed < 3.0


async def test_process_worker_serves_many_calls(aiohttp_client):
    client = await aiohttp_client(_app(Config(executor="process")))
    first = await _predict(client)
    second = await _predict(client)
    assert first[1]["pid"] == second[1]["pid"]


async def test_async_model_in_a_process(aiohttp_client):
    client = await aiohttp_client(_app(Config(executor="process"), AsyncWorker))
    status, body, _ = await _predict(client)
    assert status == 200
    assert body["pid"] != os.getpid()


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_full_queue_is_503_with_retry_after(aiohttp_client, executor):
    config = Config(executor=executor, workers=1, max_queue=1)
    client = await aiohttp_client(_app(config))
    slow = [asyncio.ensure_future(_predict(client, seconds=1.5)) for _ in range(2)]
    await asyncio.sleep(0.5)
    status, body, headers = await _predict(client)
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert "busy" in body["message"]
    assert [s for s, _, _ in await asyncio.gather(*slow)] == [200, 200]
    assert (await _predict(client))[0] == 200


async def test_timeout_is_504_and_replaces_the_worker(aiohttp_client):
    config = Config(executor="process", predict_timeout=1.0)
    app = _app(config)
    client = await aiohttp_client(app)
    status, body, _ = await _predict(client)
    assert status == 200
    old_pid = body["pid"]
    status, body, _ = await _predict(client, seconds=30)
    assert status == 504
    assert "did not answer within 1 s" in body["message"]
    status, body, _ = await _predict(client)
    assert status == 200
    assert body["pid"] != old_pid
    assert not alive(old_pid)


async def test_thread_timeout_is_504(aiohttp_client):
    client = await aiohttp_client(_app(Config(predict_timeout=0.5)))
    status, _, _ = await _predict(client, seconds=2)
    assert status == 504


@pytest.mark.parametrize("code", [0, 7])
async def test_dead_worker_fails_only_its_call(aiohttp_client, code):
    client = await aiohttp_client(_app(Config(executor="process", workers=1)))
    status, body, _ = await _predict(client, exit=code)
    assert status == 500
    assert f"exit code {code}" in body["message"]
    status, _, _ = await _predict(client)
    assert status == 200


async def test_cancelled_queued_call_never_runs(aiohttp_client, tmp_path):
    client = await aiohttp_client(_app(Config(executor="process", workers=1)))
    await _cancel_queued_call(client, tmp_path / "ran")


async def test_disconnected_queued_call_never_runs(free_port, tmp_path):
    # deepaas-run keeps aiohttp's default: a disconnect does not cancel handlers.
    runner = web.AppRunner(
        _app(Config(executor="process", workers=1)), handler_cancellation=False
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", free_port).start()
        base = f"http://127.0.0.1:{free_port}"
        async with aiohttp.ClientSession(base) as client:
            await _cancel_queued_call(client, tmp_path / "ran")
    finally:
        await runner.cleanup()


async def _cancel_queued_call(client, marker):
    busy = asyncio.ensure_future(_predict(client, seconds=2))
    await asyncio.sleep(0.5)
    queued = asyncio.ensure_future(_predict(client, marker=str(marker)))
    await asyncio.sleep(0.5)
    queued.cancel()  # the client hangs up while its call waits
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert (await busy)[0] == 200
    assert (await _predict(client))[0] == 200
    assert not marker.exists()


async def test_gpus_are_given_round_robin(aiohttp_client):
    config = Config(executor="process", workers=3, gpus=("0", "1"))
    client = await aiohttp_client(_app(config))
    answers = await asyncio.gather(*(_predict(client, seconds=1) for _ in range(3)))
    assert sorted(body["gpu"] for _, body, _ in answers) == ["0", "0", "1"]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ or os.environ[
        "CUDA_VISIBLE_DEVICES"
    ] not in ("0", "1")


async def test_pool_is_stopped_with_the_app(aiohttp_client):
    app = _app(Config(executor="process", workers=2))
    client = await aiohttp_client(app)
    assert (await _predict(client))[0] == 200
    from deepaas.api.keys import PREDICTORS

    pool = app[PREDICTORS]["worker"].pool
    pids = pool.pids
    await client.close()
    assert not any(alive(pid) for pid in pids)


def test_model_without_target_cannot_use_processes():
    class Local:
        def predict(self, **kwargs):
            return {}

    with pytest.raises(ConfigurationError, match="cannot be re-created"):
        Predictor(loading.wrap("local", Local), executor="process")


@pytest.mark.parametrize(
    "changes",
    [
        {"executor": "fork"},
        {"max_queue": -1},
        {"predict_timeout": -1},
        {"gpus": ("0",)},
    ],
)
def test_invalid_settings(changes):
    with pytest.raises(ConfigurationError):
        Config(**changes)


class SlowUpload:
    def get_predict_args(self):
        return {
            "seconds": fields.Float(load_default=0.0),
            "data": fields.Field(
                load_default=None, metadata={"type": "file", "location": "form"}
            ),
        }

    def predict(self, seconds, data):
        time.sleep(seconds)
        return {"pid": os.getpid()}


async def test_a_refused_upload_is_held_and_never_stored(aiohttp_client, tmp_path):
    config = Config(executor="thread", workers=1, max_queue=1)
    models = {"worker": loading.wrap("worker", SlowUpload)}
    app = create_app(config, models, upload_dir=str(tmp_path))
    client = await aiohttp_client(app)
    slow = [asyncio.ensure_future(_predict(client, seconds=2.0)) for _ in range(2)]
    await asyncio.sleep(0.5)
    form = aiohttp.FormData()
    form.add_field("data", b"x" * 200_000, filename="big.bin")
    start = time.monotonic()
    refused = asyncio.ensure_future(
        client.post("/v2/models/worker/predict/", data=form)
    )
    await asyncio.sleep(0.25)
    # Mid-hold: nothing of the upload is on disk.
    assert list(tmp_path.iterdir()) == []
    resp = await refused
    held = time.monotonic() - start
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    # Held before answering, so that clients retrying at once cannot starve
    # the accepted calls; and refused before the body was read.
    assert held >= 0.4
    assert list(tmp_path.iterdir()) == []
    assert [s for s, _, _ in await asyncio.gather(*slow)] == [200, 200]
