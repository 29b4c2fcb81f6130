"""Probes, metrics, request ids and access lines of the HTTP layer.

The models are module-level classes so that spawned worker processes can import
them.
"""

import asyncio
import io
import json
import logging
import os
import signal
import time

import pytest
from aiohttp.test_utils import make_mocked_request
from marshmallow import fields
from prometheus_client.parser import text_string_to_metric_families

from deepaas.api import create_app, health
from deepaas.api.keys import HEALTH, JOBS, METRICS, PREDICTORS
from deepaas.api.observe import REQUEST_ID_HEADER, acceptable_id
from deepaas.config import Config
from deepaas.log import JsonFormatter, PlainFormatter
from deepaas.model import loading
from tests._processes import alive

PREDICT = "/v2/models/legacy/predict/"
PREDICT_ROUTE = "/v2/models/{model_name}/predict/"


class Pid:
    """Answers with its pid, after ``seconds``; dies when asked."""

    def get_predict_args(self):
        return {
            "seconds": fields.Float(load_default=0.0),
            "exit": fields.Int(load_default=-1),
        }

    def predict(self, seconds, exit):
        if exit >= 0:
            os._exit(exit)
        time.sleep(seconds)
        return {"pid": os.getpid()}


def _pid_app(**config):
    return create_app(
        Config(job_store="memory", **config), {"pid": loading.wrap("pid", Pid)}
    )


async def _scrape(client):
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def _poll(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


# --- Probes --------------------------------------------------------------------------


async def test_healthz(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "alive"}
    assert (await client.head("/healthz")).status == 200


async def test_readyz_before_the_models_are_warmed_and_after(app, aiohttp_client):
    # Before start-up (warming) has run, the handler says why it is not ready.
    early = await health.ready(make_mocked_request("GET", "/readyz", app=app))
    assert early.status == 503
    body = json.loads(early.body)
    assert body["reasons"] == ["the models are being loaded and warmed"]
    assert "Not ready" in body["message"]
    client = await aiohttp_client(app)
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready"}


def test_readyz_when_stopping():
    state = health.Health()
    state.starting = False
    assert state.problems({}) == []
    state.stopping = True
    assert state.problems({}) == ["the server is shutting down"]


async def test_probes_under_the_base_path(aiohttp_client, config, models):
    client = await aiohttp_client(create_app(config.replace(base_path="/x"), models))
    assert (await client.get("/x/healthz")).status == 200
    assert (await client.get("/x/readyz")).status == 200
    assert (await client.get("/x/metrics")).status == 200
    assert (await client.get("/healthz")).status == 404


async def test_ui_still_redirects_for_2x_probes(client):
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/api"


async def test_dead_process_worker_is_not_ready_until_replaced(aiohttp_client):
    """A worker that dies while idle is noticed and replaced without a call."""
    app = _pid_app(executor="process")
    client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 200
    (pid,) = app[PREDICTORS]["pid"].pool.pids
    os.kill(pid, signal.SIGKILL)

    async def not_ready():
        return (await client.get("/readyz")).status == 503

    await _poll(not_ready)
    body = await (await client.get("/readyz")).json()
    assert body["reasons"] == [
        "model 'pid': worker processes not running: predict-pid-0"
    ]

    async def ready():
        return (await client.get("/readyz")).status == 200

    await _poll(ready)
    assert not alive(pid)
    answer = await client.post("/v2/models/pid/predict/")
    assert answer.status == 200
    samples = await _scrape(client)
    restarts = "deepaas_worker_restarts_total"
    assert _value(samples, restarts, pool="predict-pid", reason="crashed") == 1


# --- Metrics -------------------------------------------------------------------------


async def test_requests_are_counted_by_route_model_and_status(client):
    for _ in range(3):
        assert (await client.post(PREDICT, json={"message": "hi"})).status == 200
    assert (await client.post(PREDICT, json={"count": 99})).status == 422
    assert (await client.get("/v2/models/nope/")).status == 404
    assert (await client.get("/no/such/path")).status == 404
    samples = await _scrape(client)
    total = "deepaas_http_requests_total"
    assert (
        _value(
            samples,
            total,
            route=PREDICT_ROUTE,
            method="POST",
            model="legacy",
            status="200",
        )
        == 3
    )
    assert (
        _value(
            samples,
            total,
            route=PREDICT_ROUTE,
            method="POST",
            model="legacy",
            status="422",
        )
        == 1
    )
    # A name that is not served is never a label value.
    assert (
        _value(
            samples,
            total,
            route="/v2/models/{model_name}/",
            method="GET",
            model="",
            status="404",
        )
        == 1
    )
    assert (
        _value(samples, total, route="unmatched", method="GET", model="", status="404")
        == 1
    )
    assert not [key for key in samples if ("model", "nope") in key[1]]
    count = "deepaas_http_request_duration_seconds_count"
    assert (
        _value(samples, count, route=PREDICT_ROUTE, method="POST", model="legacy") == 4
    )
    bucket = "deepaas_http_request_duration_seconds_bucket"
    assert (
        _value(
            samples,
            bucket,
            route=PREDICT_ROUTE,
            method="POST",
            model="legacy",
            le="+Inf",
        )
        == 4
    )
    # The scrape itself is in flight while it is answered.
    assert _value(samples, "deepaas_http_requests_in_flight") == 1


async def test_a_second_scrape_counts_the_first(client):
    await _scrape(client)
    samples = await _scrape(client)
    key = {"route": "/metrics", "method": "GET", "model": "", "status": "200"}
    assert _value(samples, "deepaas_http_requests_total", **key) == 1


async def test_request_body_bytes_are_counted(client):
    body = json.dumps({"message": "x" * 100}).encode()
    headers = {"Content-Type": "application/json"}
    assert (await client.post(PREDICT, data=body, headers=headers)).status == 200
    upload = os.urandom(5000)
    form = {"image": io.BytesIO(upload)}
    assert (await client.post(PREDICT, data=form)).status == 200
    samples = await _scrape(client)
    received = _value(
        samples,
        "deepaas_http_request_body_bytes_total",
        route=PREDICT_ROUTE,
        model="legacy",
    )
    assert len(body) + len(upload) < received < len(body) + len(upload) + 1000
    # Routes that read no body have no series.
    assert not [
        key
        for key in samples
        if key[0] == "deepaas_http_request_body_bytes_total"
        and ("route", "/metrics") in key[1]
    ]


async def test_queue_waits_and_batches_come_through_the_telemetry(app, client):
    metrics = app[METRICS]
    assert app[PREDICTORS]["legacy"].telemetry is metrics
    metrics.queue_wait("legacy", 0.2)
    metrics.queue_wait("legacy", 3.0)
    metrics.batch("legacy", 3)
    samples = await _scrape(client)
    wait = "deepaas_predict_queue_wait_seconds"
    assert _value(samples, f"{wait}_count", model="legacy") == 2
    assert _value(samples, f"{wait}_sum", model="legacy") == pytest.approx(3.2)
    assert _value(samples, f"{wait}_bucket", model="legacy", le="0.25") == 1
    assert (
        _value(samples, "deepaas_predict_batch_size_bucket", model="legacy", le="2.0")
        == 0
    )
    assert (
        _value(samples, "deepaas_predict_batch_size_bucket", model="legacy", le="4.0")
        == 1
    )


async def test_predictions_in_flight_and_queued(aiohttp_client):
    client = await aiohttp_client(_pid_app(workers=1))
    calls = [
        asyncio.ensure_future(
            client.post("/v2/models/pid/predict/", params={"seconds": 1.0})
        )
        for _ in range(3)
    ]
    await asyncio.sleep(0.4)
    samples = await _scrape(client)
    assert _value(samples, "deepaas_predictions_in_flight", model="pid") == 3
    assert _value(samples, "deepaas_predict_queue_length", model="pid") == 2
    assert [r.status for r in await asyncio.gather(*calls)] == [200, 200, 200]
    samples = await _scrape(client)
    assert _value(samples, "deepaas_predictions_in_flight", model="pid") == 0


async def test_trainings_by_status(client):
    resp = await client.post("/v2/models/legacy/train/", params={"sleep": 0})
    uuid = (await resp.json())["uuid"]

    async def done():
        job = await (await client.get(f"/v2/models/legacy/train/{uuid}")).json()
        return job["status"] == "done"

    await _poll(done)
    samples = await _scrape(client)
    assert _value(samples, "deepaas_trainings", model="legacy", status="done") == 1
    assert _value(samples, "deepaas_trainings", model="legacy", status="running") == 0
    # Every status of every served model has a series, zeros included.
    assert ("deepaas_trainings", (("model", "modern"), ("status", "error"))) in samples


async def test_without_the_metrics_endpoint(aiohttp_client, config, models):
    app = create_app(config.replace(metrics_endpoint=False), models)
    client = await aiohttp_client(app)
    assert METRICS not in app
    assert (await client.get("/metrics")).status == 404
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert resp.headers[REQUEST_ID_HEADER]


# --- Request ids ---------------------------------------------------------------------


async def test_request_id_is_echoed(client):
    resp = await client.get("/v2/models/", headers={"X-Request-ID": "abc-123"})
    assert resp.headers[REQUEST_ID_HEADER] == "abc-123"


async def test_request_id_is_generated_and_unique(client):
    ids = set()
    for path in ("/v2/models/", "/no/such/path", "/v2/models"):
        resp = await client.get(path, allow_redirects=False)
        ids.add(resp.headers[REQUEST_ID_HEADER])
    assert len(ids) == 3
    assert all(acceptable_id(i) for i in ids)


@pytest.mark.parametrize("given", ["", "x" * 129, "with space", "caf\u00e9"])
async def test_unusable_request_id_is_replaced(client, given):
    resp = await client.get("/v2/models/", headers={"X-Request-ID": given})
    echoed = resp.headers[REQUEST_ID_HEADER]
    assert echoed != given
    assert acceptable_id(echoed)


# --- Logs ----------------------------------------------------------------------------


def _access(caplog):
    return [r for r in caplog.records if r.name == "deepaas.access"]


async def test_access_line(client, caplog):
    caplog.set_level(logging.INFO, logger="deepaas.access")
    resp = await client.post(
        PREDICT + "?count=2", json={"message": "hi"}, headers={"X-Request-ID": "r-1"}
    )
    assert resp.status == 200
    (record,) = _access(caplog)
    line = PlainFormatter().format(record)
    assert '"POST /v2/models/legacy/predict/?count=2 HTTP/1.1" 200 ' in line
    assert line.startswith(time.strftime("%Y-%m-%d"))
    assert line.endswith("ms r-1")
    assert "[request_id=" not in line


async def test_access_line_as_json(aiohttp_client, config, models, caplog):
    caplog.set_level(logging.INFO, logger="deepaas.access")
    client = await aiohttp_client(create_app(config.replace(log_format="json"), models))
    resp = await client.post(PREDICT, json={"message": "hi"})
    (record,) = _access(caplog)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["logger"] == "deepaas.access"
    assert entry["method"] == "POST"
    assert entry["path"] == PREDICT
    assert entry["status"] == 200
    assert entry["route"] == PREDICT_ROUTE
    assert entry["model"] == "legacy"
    assert entry["bytes"] == int(resp.headers["Content-Length"])
    assert entry["duration_ms"] > 0
    assert entry["request_id"] == resp.headers[REQUEST_ID_HEADER]


async def test_probes_are_left_out_of_the_access_log(client, caplog):
    caplog.set_level(logging.INFO, logger="deepaas.access")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status == 200
    assert _access(caplog) == []
    assert (await client.get("/v2/models/")).status == 200
    assert len(_access(caplog)) == 1


async def test_probes_logged_when_asked(aiohttp_client, config, models, caplog):
    caplog.set_level(logging.INFO, logger="deepaas.access")
    app = create_app(config.replace(access_log_probes=True), models)
    client = await aiohttp_client(app)
    await client.get("/healthz")
    (record,) = _access(caplog)
    assert '"GET /healthz HTTP/1.1" 200' in record.getMessage()


async def test_access_log_off(aiohttp_client, config, models, caplog):
    caplog.set_level(logging.INFO, logger="deepaas.access")
    client = await aiohttp_client(create_app(config.replace(access_log=False), models))
    resp = await client.get("/v2/models/")
    assert resp.headers[REQUEST_ID_HEADER]
    assert _access(caplog) == []


@pytest.fixture
def lines():
    """Lines logged by deepaas, formatted as they are logged (plain)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter())
    logger = logging.getLogger("deepaas")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


async def test_lines_logged_while_answering_carry_the_request_id(client, lines):
    resp = await client.post(
        PREDICT, json={"fail": True}, headers={"X-Request-ID": "failing-1"}
    )
    assert resp.status == 500
    (error,) = [
        line for line in lines.getvalue().splitlines() if "deepaas.api.errors" in line
    ]
    assert " deepaas.api.errors [request_id=failing-1]: " in error


async def test_lines_about_a_training_carry_its_job_id(client, lines):
    resp = await client.post("/v2/models/legacy/train/", params={"fail": "true"})
    uuid = (await resp.json())["uuid"]

    async def failed():
        job = await (await client.get(f"/v2/models/legacy/train/{uuid}")).json()
        return job["status"] == "error"

    await _poll(failed)
    await client.delete(f"/v2/models/legacy/train/{uuid}")
    logged = lines.getvalue().splitlines()
    (failure,) = [line for line in logged if "failed:" in line and uuid in line]
    assert f" job_id={uuid}]: Training " in failure
    (removal,) = [line for line in logged if "removed" in line]
    assert f" job_id={uuid}]: Training " in removal


async def test_health_counts_ready_after_start(app, client):
    assert app[HEALTH].starting is False
    assert app[HEALTH].stopping is False


async def test_a_failing_job_store_leaves_the_other_metrics(app, client, caplog):
    def broken():
        raise OSError("disk gone")

    store = app[JOBS].store
    original = store.count_by_status
    store.count_by_status = broken
    try:
        samples = await _scrape(client)
    finally:
        store.count_by_status = original
    assert not [key for key in samples if key[0] == "deepaas_trainings"]
    assert [key for key in samples if key[0] == "deepaas_http_requests_in_flight"]
    assert "Counting trainings for /metrics failed" in caplog.text


async def test_multiprocess_mode_in_one_process(tmp_path, monkeypatch):
    # What each of several HTTP workers does, here with a single one: values in
    # files of the shared directory, read back by the multiprocess collector.
    from prometheus_client import values

    from deepaas.api import metrics as metrics_module
    from deepaas.jobs import MemoryJobStore

    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(metrics_module, "SAMPLE_INTERVAL_S", 0.05)
    metrics = metrics_module.Metrics(
        ["m"], MemoryJobStore(), multiprocess_dir=str(tmp_path)
    )
    metrics.requests.labels("/r", "GET", "m", "200").inc(3)
    metrics.worker_restart("predict-m", "crashed")
    async with metrics_module.sampling(metrics, lambda: 2, {}):
        await asyncio.sleep(0.2)
    assert (tmp_path / f"counter_{os.getpid()}.db").exists()
    assert (tmp_path / f"gauge_livesum_{os.getpid()}.db").exists()
    body, content_type = metrics.render(None)
    assert content_type.startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    labels = (("method", "GET"), ("model", "m"), ("route", "/r"), ("status", "200"))
    assert samples["deepaas_http_requests_total", labels] == 3
    assert samples["deepaas_http_requests_in_flight", ()] == 2
    assert samples["deepaas_trainings", (("model", "m"), ("status", "done"))] == 0
    restarts = (("pool", "predict-m"), ("reason", "crashed"))
    assert samples["deepaas_worker_restarts_total", restarts] == 1


async def test_not_ready_as_soon_as_the_server_drains(aiohttp_client):
    app = _pid_app()
    client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 200
    # What the runner calls first when it stops, before requests in progress end.
    await app.shutdown()
    answer = await client.get("/readyz")
    assert answer.status == 503
    assert "shutting down" in (await answer.text())


def test_request_series_are_exported_as_prometheus_client_would():
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from deepaas.api.metrics import LATENCY_BUCKETS, Metrics
    from deepaas.jobs import MemoryJobStore

    metrics = Metrics(["m"], MemoryJobStore())
    reference = CollectorRegistry()
    count = Counter(
        "deepaas_http_requests",
        "x",
        ("route", "method", "model", "status"),
        registry=reference,
    )
    latency = Histogram(
        "deepaas_http_request_duration_seconds",
        "x",
        ("route", "method", "model"),
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    # On bounds, between them, beyond the last one.
    calls = [
        ("/a", "GET", "m", 200, 0.001),
        ("/a", "GET", "m", 200, 0.0011),
        ("/a", "GET", "m", 404, 0.3),
        ("/b", "POST", "", 200, 61.0),
        ("/b", "POST", "", 200, 0.0),
    ]
    for route, method, model, status, seconds in calls:
        metrics.request_series(route, method, model, status).record(seconds)
        count.labels(route, method, model, str(status)).inc()
        latency.labels(route, method, model).observe(seconds)

    def samples(registry):
        text = generate_latest(registry).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            if family.name
            in ("deepaas_http_requests", "deepaas_http_request_duration_seconds")
            for s in family.samples
            if not s.name.endswith("_created")
        }

    ours = samples(metrics.registry)
    assert ours == samples(reference)
    le = (("le", "0.001"), ("method", "GET"), ("model", "m"), ("route", "/a"))
    assert ours["deepaas_http_request_duration_seconds_bucket", le] == 1
