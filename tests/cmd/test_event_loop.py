"""The event loop the server runs on: uvloop where installed, or asyncio's own."""

import asyncio
import importlib.util
import signal

import pytest

from deepaas.cmd import _loops
from deepaas.cmd.gunicorn import UVLOOP_WORKER_CLASS, WORKER_CLASS, DeepaasApplication
from deepaas.config import Config
from deepaas.exceptions import ConfigurationError
from tests.cmd.test_run import start  # noqa: F401 - a fixture

pytest.importorskip("uvloop")


def test_auto_is_uvloop_where_installed():
    import uvloop

    assert _loops.loop_name("auto") == "uvloop"
    loop = _loops.new_event_loop("auto")
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    loop = _loops.new_event_loop("asyncio")
    try:
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "uvloop" else real(name, *a),
    )
    assert _loops.loop_name("auto") == "asyncio"
    with pytest.raises(ConfigurationError, match="pip install uvloop"):
        _loops.loop_name("uvloop")


def test_an_unknown_loop_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="event_loop"):
        Config(event_loop="trio")


@pytest.mark.parametrize(
    ("choice", "worker_class"),
    [("auto", UVLOOP_WORKER_CLASS), ("asyncio", WORKER_CLASS)],
)
def test_http_workers_run_the_chosen_loop(choice, worker_class):
    app = DeepaasApplication(Config(event_loop=choice, http_workers=2))
    assert app.cfg.worker_class_str == worker_class


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_the_server_runs_on_either_loop(start, choice):  # noqa: F811 - the fixture
    server = start("--model-name", "legacy", "--event-loop", choice)
    server.wait_until_serving()
    status, _ = server.request(
        "/v2/models/legacy/predict/", data={"message": "hi", "count": 1}
    )
    assert status == 200
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr
    assert f"(event loop: {choice})" in server.stderr
