"""``deepaas-run`` with authentication: refusals at start, tokens when serving."""

import json
import urllib.error
import urllib.request

import pytest

from deepaas.cmd import run
from tests.cmd.test_run import (
    STARTUP_TIMEOUT,
    _env,
    start,  # noqa: F401 (fixture)
)

TOKEN = "run-test-token-0123456789"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--listen-ip", "0.0.0.0"], "--auth none (DEEPAAS_AUTH=none)"),
        (["--listen-ip", "::", "--http-workers", "2"], "without authentication"),
        (
            ["--listen-ip", "0.0.0.0", "--auth", "none", "--debug-endpoint"],
            "--force-debug-endpoint",
        ),
    ],
)
def test_unsafe_start_is_refused_before_anything_is_loaded(
    capsys, monkeypatch, args, fragment
):
    monkeypatch.delenv("DEEPAAS_AUTH", raising=False)
    monkeypatch.delenv("DEEPAAS_TOKENS", raising=False)
    # A model that does not exist: the refusal must come before loading it.
    assert run.main(["--model-name", "nope", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepaas-run: refusing to ")
    assert fragment in err
    assert "nope" not in err


def _get(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_serves_with_tokens_from_the_environment(start, tmp_path):  # noqa: F811
    server = start(
        "--model-name", "legacy", env=_env(tmp_path, DEEPAAS_TOKENS=f"{TOKEN} predict")
    )
    server.wait_until_serving("/v2/")  # public
    status, body = _get(server.url + "/v2/models/")
    assert status == 401
    assert "Authorization: Bearer" in body["message"]
    status, body = _get(server.url + "/v2/models/", TOKEN)
    assert status == 200
    assert [m["id"] for m in body["models"]] == ["legacy"]
    server.kill()
    assert TOKEN not in server.stdout + server.stderr


def test_unreadable_token_file_exits_with_1(start, tmp_path):  # noqa: F811
    server = start("--model-name", "legacy", "--auth-token-file", str(tmp_path / "no"))
    assert server.wait(timeout=STARTUP_TIMEOUT) == 1
    assert "cannot read the token file" in server.stderr
    assert "Traceback" not in server.stderr
