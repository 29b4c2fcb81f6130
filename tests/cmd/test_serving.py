"""``serving.serve`` in this process: a stop signal ends it gracefully."""

import os
import signal
import threading
import time
import urllib.request

from deepaas.api import create_app
from deepaas.cmd import serving
from deepaas.config import Config


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status


def test_serve_answers_then_stops_on_sigterm(free_port, state_dir, models):
    config = Config(listen_port=free_port, state_dir=str(state_dir), warm=False)
    scratch = serving.make_scratch_dir()
    app = create_app(config, models, upload_dir=scratch)
    url = f"http://127.0.0.1:{free_port}/v2/models/"
    seen = {}

    def client():
        deadline = time.monotonic() + 20
        while "status" not in seen and time.monotonic() < deadline:
            try:
                seen["status"] = _get(url)
            except OSError:
                time.sleep(0.05)
        seen["scratch"] = os.path.isdir(scratch)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=client)
    thread.start()
    try:
        assert serving.serve(app, config, scratch_dir=scratch) == 0
    finally:
        thread.join()
    assert seen == {"status": 200, "scratch": True}
    assert not os.path.exists(scratch)
    # The previous handlers are back.
    assert signal.getsignal(signal.SIGTERM) is before


def test_runner_applies_the_configured_limits():
    config = Config(header_timeout=3, max_header_size=100, max_headers=5)
    assert serving.handler_options(config) == {
        "keepalive_timeout": 3,
        "max_line_size": 100,
        "max_field_size": 100,
        "max_headers": 5,
    }


def test_forced_exit_status_is_that_of_a_death_by_the_signal():
    assert serving.forced_exit_status(signal.SIGTERM) == 143
    assert serving.forced_exit_status(signal.SIGINT) == 130
