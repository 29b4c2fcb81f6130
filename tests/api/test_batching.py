"""Dynamic batching over HTTP, in threads and in worker processes."""

import asyncio
import os

import aiohttp
import pytest
from aiohttp import web
from deepaas_fixture_modern import BatchModel

from deepaas.api import create_app
from deepaas.api.keys import PREDICTORS
from deepaas.config import Config
from deepaas.model import loading
from tests._processes import alive


def _app(**settings):
    settings.setdefault("max_batch_size", 8)
    return create_app(Config(**settings), {"batch": loading.wrap("batch", BatchModel)})


async def _predict(client, **query):
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}
    resp = await client.post("/v2/models/batch/predict/", params=query)
    body = await resp.json()
    return resp.status, body.get("predictions", body)


async def _busy_then(client, *queries, hold=1.0):
    """Occupy the only worker, send ``queries`` meanwhile; return every answer."""
    first = asyncio.ensure_future(_predict(client, text="hold", seconds=hold))
    await asyncio.sleep(0.5)
    queued = [asyncio.ensure_future(_predict(client, **q)) for q in queries]
    return await asyncio.gather(first, *queued)


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_concurrent_requests_share_a_batch(aiohttp_client, executor):
    BatchModel.batches.clear()
    client = await aiohttp_client(_app(executor=executor))
    answers = await _busy_then(client, *({"text": f"t{i}"} for i in range(4)))
    assert [status for status, _ in answers] == [200] * 5
    assert [body["text"] for _, body in answers] == ["hold", "t0", "t1", "t2", "t3"]
    assert [body["batch"] for _, body in answers] == [1, 4, 4, 4, 4]
    pids = {body["pid"] for _, body in answers}
    assert len(pids) == 1
    assert (os.getpid() in pids) == (executor == "thread")
    assert BatchModel.batches == ([1, 4] if executor == "thread" else [])


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_errors_of_a_batch_are_answered_per_caller(aiohttp_client, executor):
    client = await aiohttp_client(_app(executor=executor))
    answers = await _busy_then(
        client, {"text": "ok"}, {"text": "bad", "fail": True}, {"text": "ok2"}
    )
    assert [status for status, _ in answers] == [200, 200, 500, 200]
    assert answers[2][1]["message"] == (
        "Model 'batch' predict() failed: ValueError: bad item bad"
    )
    answers = await _busy_then(client, {"text": "a"}, {"text": "b", "explode": True})
    assert [status for status, _ in answers] == [200, 500, 500]
    assert "predict_batch() failed: RuntimeError" in answers[1][1]["message"]
    answers = await _busy_then(client, {"text": "a"}, {"text": "b", "short": True})
    assert [status for status, _ in answers] == [200, 500, 500]
    assert "returned 1 results for 2 requests" in answers[2][1]["message"]


async def test_full_queue_is_503(aiohttp_client):
    client = await aiohttp_client(_app(max_batch_size=2, max_queue=1))
    answers = await _busy_then(client, *({"text": str(i)} for i in range(4)))
    statuses = sorted(status for status, _ in answers)
    # 1 worker x 2 per batch, plus 1 waiting: of 5, 2 are refused.
    assert statuses == [200, 200, 200, 503, 503]


async def test_a_timed_out_batch_kills_its_worker_only_when_nobody_waits(
    aiohttp_client,
):
    client = await aiohttp_client(_app(executor="process", predict_timeout=3.0))
    status, body = await _predict(client, text="first")
    pid = body["pid"]
    # "a" waits from the start, "b" joins its batch later: the batch outlives
    # a's deadline only, so it runs on for b, in the same worker.
    hold = asyncio.ensure_future(_predict(client, text="hold", seconds=1.5))
    await asyncio.sleep(0.1)
    a = asyncio.ensure_future(_predict(client, text="a", seconds=2.0))
    await asyncio.sleep(0.9)
    b = asyncio.ensure_future(_predict(client, text="b"))
    answers = await asyncio.gather(hold, a, b)
    assert [status for status, _ in answers] == [200, 504, 200]
    assert (answers[2][1]["batch"], answers[2][1]["pid"]) == (2, pid)
    # Every caller of this batch times out: its worker is killed and replaced.
    status, _ = await _predict(client, text="stuck", seconds=30)
    assert status == 504
    status, body = await _predict(client, text="after")
    assert status == 200
    assert body["pid"] != pid
    assert not alive(pid)


async def test_disconnected_caller_is_dropped_from_its_batch(free_port, tmp_path):
    # deepaas-run keeps aiohttp's default: a disconnect does not cancel handlers.
    app = _app(executor="process")
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    gone, kept = tmp_path / "gone", tmp_path / "kept"
    try:
        await web.TCPSite(runner, "127.0.0.1", free_port).start()
        async with aiohttp.ClientSession(f"http://127.0.0.1:{free_port}") as client:
            busy = asyncio.ensure_future(_predict(client, text="busy", seconds=2))
            await asyncio.sleep(0.5)
            queued = asyncio.ensure_future(_predict(client, marker=str(gone)))
            other = asyncio.ensure_future(
                _predict(client, text="kept", marker=str(kept))
            )
            await asyncio.sleep(0.5)
            queued.cancel()  # the client hangs up while its call waits
            with pytest.raises(asyncio.CancelledError):
                await queued
            assert (await busy)[0] == 200
            status, body = await other
            assert (status, body["batch"]) == (200, 1)
    finally:
        await runner.cleanup()
    assert kept.read_text() == "kept"
    assert not gone.exists()


async def test_batching_stays_off_by_default(aiohttp_client):
    app = _app(max_batch_size=1)
    client = await aiohttp_client(app)
    answers = await _busy_then(client, {"text": "a"}, {"text": "b"}, hold=0.6)
    assert [body["batch"] for _, body in answers] == [0, 0, 0]
    assert app[PREDICTORS]["batch"]._batcher is None
