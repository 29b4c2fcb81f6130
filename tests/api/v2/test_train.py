import asyncio
import datetime as dt
import itertools
import os
import socket
from pathlib import Path

from deepaas.api import create_app
from deepaas.api.keys import JOBS
from deepaas.config import Config
from deepaas.jobs import Job, JobStatus, MemoryJobStore, SQLiteJobStore
from deepaas.jobs.manager import INTERRUPTED_QUEUED, INTERRUPTED_RUNNING
from deepaas.jobs.owner import make_owner
from tests._processes import alive

TRAIN = "/v2/models/legacy/train/"


async def _wait_for(client, uuid, status, timeout=30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        body = await (await client.get(f"{TRAIN}{uuid}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"training {uuid} never reached {status!r}: {body}")


async def test_post_answers_the_running_job_at_once(client):
    resp = await client.post(TRAIN, params={"epochs": 3, "sleep": 0.2})
    assert resp.status == 200
    job = await resp.json()
    assert job["status"] == "running"
    assert len(job["uuid"]) == 32
    assert job["args"] == {"epochs": 3, "sleep": 0.2, "fail": False}
    assert job["date"]
    done = await _wait_for(client, job["uuid"], "done")
    assert done["result"]["output"] == {"epochs": 3, "loss": 0.1}
    assert done["result"]["duration"].startswith("0:00:")
    assert done["result"]["finish_date"]
    assert done["duration"] > 0


async def test_list_is_a_bare_json_list(client):
    first = await (await client.post(TRAIN)).json()
    resp = await client.get(TRAIN)
    assert resp.status == 200
    listing = await resp.json()
    assert isinstance(listing, list)
    assert [j["uuid"] for j in listing] == [first["uuid"]]
    await _wait_for(client, first["uuid"], "done")


async def test_failed_training_is_error_with_message(client):
    job = await (await client.post(TRAIN, params={"fail": "true"})).json()
    failed = await _wait_for(client, job["uuid"], "error")
    # The exception's own text, as 2.x answered.
    assert failed["message"] == "train boom"
    assert "result" not in failed


def _workers(client, model="legacy"):
    return client.app[JOBS].worker_pids(model)


async def test_delete_cancels_a_running_training_and_keeps_it(client):
    job = await (await client.post(TRAIN, params={"sleep": 60})).json()
    # Running in its worker once it has printed (a cancel while the worker
    # starts leaves the worker for the next training).
    logs = f"{TRAIN}{job['uuid']}/logs"
    for _ in range(600):
        if "training for" in await (await client.get(logs)).text():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the training never started")
    (worker,) = _workers(client)
    assert alive(worker)
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await client.delete(f"{TRAIN}{job['uuid']}")
    assert resp.status == 200
    cancelled = await resp.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["message"] == "Training cancelled"
    assert cancelled["finished"]
    assert loop.time() - started < 10
    # Its worker is killed by then; a fresh one takes its place.
    assert not alive(worker)
    kept = await (await client.get(f"{TRAIN}{job['uuid']}")).json()
    assert kept["status"] == "cancelled"
    # A second DELETE removes the finished (cancelled) record.
    assert (await client.delete(f"{TRAIN}{job['uuid']}")).status == 200
    assert (await client.get(f"{TRAIN}{job['uuid']}")).status == 404
    for _ in range(300):
        if _workers(client) and _workers(client) != [worker]:
            break
        await asyncio.sleep(0.05)
    (fresh,) = _workers(client)
    assert fresh != worker
    assert alive(fresh)


async def test_delete_cancels_a_queued_training(client):
    running = await (await client.post(TRAIN, params={"sleep": 60})).json()
    queued = await (await client.post(TRAIN)).json()
    assert queued["status"] == "queued"
    resp = await client.delete(f"{TRAIN}{queued['uuid']}")
    assert (await resp.json())["status"] == "cancelled"
    assert (await resp.json())["started"] is None
    await client.delete(f"{TRAIN}{running['uuid']}")
    statuses = [j["status"] for j in await (await client.get(TRAIN)).json()]
    assert statuses == ["cancelled", "cancelled"]


async def test_queued_trainings_start_in_order(client):
    jobs = [
        await (await client.post(TRAIN, params={"epochs": n, "sleep": 0.3})).json()
        for n in range(3)
    ]
    assert [j["status"] for j in jobs] == ["running", "queued", "queued"]
    listing = await (await client.get(TRAIN)).json()
    assert [j["status"] for j in listing] == ["running", "queued", "queued"]
    done = [await _wait_for(client, j["uuid"], "done") for j in jobs]
    starts = [j["started"] for j in done]
    assert starts == sorted(starts)
    # Each began after the one before it had finished (one slot).
    for before, after in itertools.pairwise(done):
        assert after["started"] >= before["finished"]


async def test_records_outlive_the_application(aiohttp_client, config, models):
    first = await aiohttp_client(create_app(config, models))
    job = await (await first.post(TRAIN)).json()
    await _wait_for(first, job["uuid"], "done")
    await first.close()
    second = await aiohttp_client(create_app(config, models))
    body = await (await second.get(f"{TRAIN}{job['uuid']}")).json()
    assert body["status"] == "done"
    assert body["result"]["output"] == {"epochs": 1, "loss": 0.1}


async def test_stopping_the_server_interrupts_trainings(aiohttp_client, config, models):
    first = await aiohttp_client(create_app(config, models))
    running = await (await first.post(TRAIN, params={"sleep": 60})).json()
    queued = await (await first.post(TRAIN)).json()
    await first.close()
    store = SQLiteJobStore(Path(config.state_dir) / "jobs.sqlite3")
    assert store.get("legacy", running["uuid"]).message == INTERRUPTED_RUNNING
    assert store.get("legacy", queued["uuid"]).message == INTERRUPTED_QUEUED
    assert {j.status for j in store.list("legacy")} == {JobStatus.INTERRUPTED}


async def test_leftover_jobs_are_interrupted_at_start_up(
    aiohttp_client, config, models
):
    store = SQLiteJobStore(Path(config.state_dir) / "jobs.sqlite3")
    started = dt.datetime(2024, 5, 6, 7, 8, 9)
    store.add(
        Job(
            uuid="1" * 32,
            model="legacy",
            args={"epochs": 2},
            status=JobStatus.RUNNING,
            started=started,
        )
    )
    store.add(Job(uuid="2" * 32, model="legacy", args={}))
    client = await aiohttp_client(create_app(config, models))
    running = await (await client.get(f"{TRAIN}{'1' * 32}")).json()
    assert running["status"] == "interrupted"
    assert running["message"] == INTERRUPTED_RUNNING
    assert running["args"] == {"epochs": 2}
    assert running["started"] == started.isoformat()
    assert running["finished"]
    queued = await (await client.get(f"{TRAIN}{'2' * 32}")).json()
    assert (queued["status"], queued["message"]) == ("interrupted", INTERRUPTED_QUEUED)


async def test_memory_store_can_be_passed_in(aiohttp_client, config, models):
    client = await aiohttp_client(
        create_app(config, models, job_store=MemoryJobStore())
    )
    job = await (await client.post(TRAIN)).json()
    await _wait_for(client, job["uuid"], "done")
    assert not (Path(config.state_dir) / "jobs.sqlite3").exists()


async def test_delete_of_finished_training_removes_it(client):
    job = await (await client.post(TRAIN)).json()
    await _wait_for(client, job["uuid"], "done")
    resp = await client.delete(f"{TRAIN}{job['uuid']}")
    assert (await resp.json())["status"] == "done"
    assert await (await client.get(TRAIN)).json() == []


async def test_unknown_training_is_404(client):
    for method in ("get", "delete"):
        resp = await getattr(client, method)(f"{TRAIN}0123456789abcdef")
        assert resp.status == 404
        assert (await resp.json())["message"] == "Training '0123456789abcdef' not found"


async def test_training_of_another_model_is_not_visible(client):
    job = await (await client.post(TRAIN)).json()
    resp = await client.get(f"/v2/models/static/train/{job['uuid']}")
    assert resp.status == 404
    await _wait_for(client, job["uuid"], "done")


async def test_invalid_train_argument_is_422(client):
    resp = await client.post(TRAIN, params={"epochs": "x"})
    assert resp.status == 422
    assert "epochs" in (await resp.json())["errors"]


async def test_static_class_trains_in_a_process(client):
    job = await (
        await client.post("/v2/models/static/train/", params={"epochs": 2})
    ).json()
    body = await _wait_for_model(client, "static", job["uuid"])
    assert body["result"]["output"] == {"epochs": 2, "loss": 0.2}


async def _wait_for_model(client, model, uuid):
    for _ in range(300):
        body = await (await client.get(f"/v2/models/{model}/train/{uuid}")).json()
        if body["status"] == "done":
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(body)


async def test_logs_hold_python_and_low_level_output(client, state_dir):
    job = await (await client.post(TRAIN, params={"epochs": 4})).json()
    await _wait_for(client, job["uuid"], "done")
    resp = await client.get(f"{TRAIN}{job['uuid']}/logs")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert "training for 4 epochs\n" in text
    assert "low-level output\n" in text
    assert (state_dir / "jobs" / f"{job['uuid']}.log").read_text() == text
    # Removing the finished record removes its log.
    await client.delete(f"{TRAIN}{job['uuid']}")
    assert not (state_dir / "jobs" / f"{job['uuid']}.log").exists()
    assert (await client.get(f"{TRAIN}{job['uuid']}/logs")).status == 404


def _events(text):
    events = []
    for block in text.split("\n\n"):
        if block:
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields.get("event", "message"), fields["data"]))
    return events


async def test_logs_follow_streams_events_until_the_end(client):
    job = await (await client.post(TRAIN, params={"epochs": 2, "sleep": 1})).json()
    resp = await client.get(f"{TRAIN}{job['uuid']}/logs", params={"follow": "true"})
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    events = _events(await resp.text())
    assert ("message", "training for 2 epochs") in events
    assert ("message", "low-level output") in events
    assert events[-1] == ("end", "done")


async def test_logs_follow_by_accept_header(client):
    job = await (await client.post(TRAIN)).json()
    headers = {"Accept": "text/event-stream"}
    resp = await client.get(f"{TRAIN}{job['uuid']}/logs", headers=headers)
    assert _events(await resp.text())[-1] == ("end", "done")


async def test_logs_without_state_dir_use_a_temporary_directory(aiohttp_client, models):
    app = create_app(Config(), models)
    client = await aiohttp_client(app)
    job = await (await client.post(TRAIN)).json()
    await _wait_for(client, job["uuid"], "done")
    text = await (await client.get(f"{TRAIN}{job['uuid']}/logs")).text()
    assert "training for 1 epochs" in text
    log_dir = Path(app[JOBS].log_dir)
    await client.close()
    assert not log_dir.exists()


async def test_leftovers_of_a_live_server_are_left_alone(
    aiohttp_client, config, models
):
    store = SQLiteJobStore(Path(config.state_dir) / "jobs.sqlite3")
    live = make_owner(os.getpid())  # e.g. a sibling HTTP worker
    dead = f"{socket.gethostname()}:999999999:1:999999999"
    store.add(Job(uuid="1" * 32, model="legacy", args={}, owner=live))
    store.add(Job(uuid="2" * 32, model="legacy", args={}, owner=dead))
    client = await aiohttp_client(create_app(config, models))
    kept = await (await client.get(f"{TRAIN}{'1' * 32}")).json()
    assert kept["status"] == "queued"
    gone = await (await client.get(f"{TRAIN}{'2' * 32}")).json()
    assert gone["status"] == "interrupted"


async def test_delete_cancels_a_training_run_by_another_app_sharing_the_store(
    aiohttp_client, config, models
):
    runner = await aiohttp_client(create_app(config, models))
    other = await aiohttp_client(create_app(config, models))
    job = await (await runner.post(TRAIN, params={"sleep": 60})).json()
    assert job["status"] == "running"
    resp = await other.delete(f"{TRAIN}{job['uuid']}")
    assert resp.status == 200
    body = await resp.json()
    assert (body["status"], body["message"]) == ("cancelled", "Training cancelled")
    seen = await (await runner.get(f"{TRAIN}{job['uuid']}")).json()
    assert seen["status"] == "cancelled"
