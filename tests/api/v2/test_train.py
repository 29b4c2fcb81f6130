import asyncio

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


async def test_delete_cancels_a_running_training_and_removes_it(client):
    job = await (await client.post(TRAIN, params={"sleep": 60})).json()
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await client.delete(f"{TRAIN}{job['uuid']}")
    assert resp.status == 200
    assert (await resp.json())["status"] == "cancelled"
    assert loop.time() - started < 10
    assert (await client.get(f"{TRAIN}{job['uuid']}")).status == 404


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
