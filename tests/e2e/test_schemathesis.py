"""Property-based checks of the live server against its own OpenAPI 3.1 document.

A real ``deepaas-run`` serving the legacy and the modern fixture models is started
on loopback; schemathesis generates requests for every operation in
``/openapi.json``, both fitting the document (positive) and breaking it
(negative), a bounded number per operation. Every answer must be documented
(status code, media type, body schema), never a 5xx but the fixtures' own
documented failures, and every error a JSON ``{"message": ...}`` without a
traceback or a server path. Job ids are drawn from real trainings as well as
generated ones. Afterwards the server is still healthy, and nothing was written
outside its temporary and state directories.
"""

import json
import time
from pathlib import Path

import hypothesis.strategies as st
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

import deepaas
from tests.e2e._server import stop_server

# Examples per operation and mode: bounded so the whole run stays well under a
# minute on a small CI machine.
EXAMPLES = 50
# Accepted trainings are records (queued behind a long one, see below), cheap,
# but each costs a row and, once running, a process: fewer.
TRAIN_EXAMPLES = 15
CALL_TIMEOUT = 15
# aiohttp's default limit on the request line (and on each header line).
HTTP_LINE_LIMIT = 8190

# Not negative_data_rejection: as 2.x, arguments a model does not declare are
# ignored and a lone value stands for a list, so some "invalid" requests are
# rightly accepted.
CHECKS = [
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]

# The fixtures' own documented failures: each answers the documented 500.
DOCUMENTED_500 = {
    "legacy": ("fail", "predict() failed: ValueError: boom"),
    "modern": ("bad_response", "returned a response that does not match its schema"),
}

DEEPAAS_DIR = str(Path(deepaas.__file__).parent)


def _sent(case, name):
    """The value the case sent for argument ``name`` (query or form body)."""
    for source in (case.query, case.body if isinstance(case.body, dict) else None):
        if source and name in source:
            return source[name]
    return None


def _asks_to_fail(case):
    model = case.path.split("/")[3]
    if model not in DOCUMENTED_500 or not case.path.endswith("/predict/"):
        return False
    name, _ = DOCUMENTED_500[model]
    return str(_sent(case, name)).lower() in ("true", "1")


def _refused_by_http_parser(response):
    """A request or header line past aiohttp's limit: refused below the app.

    Generated query strings (a long list of numbers) may exceed it; the
    answer is then aiohttp's plain 400 (see docs/user/hostile-input.rst).
    """
    request = response.request
    lines = [f"{request.method} {request.path_url} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    too_long = any(len(line.encode()) > HTTP_LINE_LIMIT for line in lines)
    return too_long and response.status_code == 400


def _check_error_body(server, response):
    """An error is a JSON object with a message, and gives nothing away."""
    text = response.text
    # schemathesis keeps headers lowercased, as lists.
    (content_type,) = response.headers["content-type"]
    assert content_type.startswith("application/json"), text
    assert "message" in json.loads(text), text
    assert "Traceback" not in text, text
    for secret in (str(server.root), DEEPAAS_DIR):
        assert secret not in text, text


def _finished_job(server, model):
    status, job = server.post_json(f"/v2/models/{model}/train/", {})
    assert status == 200, job
    deadline = time.monotonic() + 60
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        _, _, body = server.request("GET", f"/v2/models/{model}/train/{job['uuid']}")
        job = json.loads(body)
    return job["uuid"]


def test_every_answer_is_documented(live_server):
    server = live_server
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    # DELETE last: it removes the real trainings the other operations look at.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: op.method.upper() == "DELETE",
    )
    labels = {op.label for op in operations}
    for model in ("legacy", "modern"):
        for label in (
            f"POST /v2/models/{model}/predict/",
            f"POST /v2/models/{model}/train/",
            f"DELETE /v2/models/{model}/train/{{uuid}}",
            f"GET /v2/models/{model}/train/{{uuid}}/logs",
        ):
            assert label in labels

    # Real job ids, so that show, logs and delete also see existing trainings.
    job_ids = [_finished_job(server, model) for model in ("legacy", "modern")]
    # Then one long training holds the only training slot: fuzzed trainings are
    # accepted as queued records instead of each starting a process.
    status, holder = server.post_json("/v2/models/legacy/train/", {"sleep": 600})
    assert status == 200, holder
    assert holder["status"] == "running", holder

    calls = 0
    for operation in operations:
        examples = TRAIN_EXAMPLES if operation.label.endswith("/train/") else EXAMPLES
        takes_job = "{uuid}" in operation.path
        # A path parameter is any string, so no value breaks it: an operation
        # without a query, header or body has nothing to send wrong.
        breakable = bool(operation.query or operation.headers or operation.body)
        modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * breakable
        for mode in modes:

            @given(
                case=operation.as_strategy(generation_mode=mode),
                job_id=st.sampled_from(job_ids) if takes_job else st.none(),
                use_real=st.booleans(),
            )
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                # No shrinking: each step is a request, and a failure could
                # take minutes to shrink; the failing case is reported as found.
                phases=[Phase.explicit, Phase.generate],
            )
            def check(case, job_id, use_real):
                nonlocal calls
                calls += 1
                if job_id is not None and use_real:
                    case.path_parameters["uuid"] = job_id
                response = case.call(base_url=server.url, timeout=CALL_TIMEOUT)
                status = response.status_code
                if status == 500 and _asks_to_fail(case):
                    _, text = DOCUMENTED_500[case.path.split("/")[3]]
                    assert text in response.json()["message"]
                else:
                    assert status < 500, (case.path, status, response.text)
                if _refused_by_http_parser(response):
                    return
                if status >= 400:
                    _check_error_body(server, response)
                case.validate_response(response, checks=CHECKS)

            check()

    assert calls >= 2 * len(operations)
    server.assert_healthy()
    # Stopped here: queued trainings keep their uploads until they end.
    stop_server(server)
    assert "Unexpected error" not in server.log.read_text(errors="replace")
    assert server.stray_files() == []
    assert server.leftover_uploads() == []
