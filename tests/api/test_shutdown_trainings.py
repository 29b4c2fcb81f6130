"""What a stopping application does with its trainings (``shutdown_trainings``)."""

from pathlib import Path

from deepaas.api import create_app
from deepaas.jobs import JobStatus, SQLiteJobStore
from deepaas.jobs.manager import INTERRUPTED_QUEUED

TRAIN = "/v2/models/legacy/train/"


async def test_finish_mode_lets_running_trainings_finish(
    aiohttp_client, config, models
):
    config = config.replace(shutdown_trainings="finish")
    client = await aiohttp_client(create_app(config, models))
    running = await (await client.post(TRAIN, params={"sleep": 1})).json()
    assert running["status"] == "running"
    queued = await (await client.post(TRAIN)).json()
    assert queued["status"] == "queued"
    await client.close()
    store = SQLiteJobStore(Path(config.state_dir) / "jobs.sqlite3")
    done = store.get("legacy", running["uuid"])
    assert done.status is JobStatus.DONE
    assert done.result == {"epochs": 1, "loss": 0.1}
    interrupted = store.get("legacy", queued["uuid"])
    assert interrupted.status is JobStatus.INTERRUPTED
    assert interrupted.message == INTERRUPTED_QUEUED
