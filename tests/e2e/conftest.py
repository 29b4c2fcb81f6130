"""The live server the end-to-end tests run against (see ``_server``)."""

import pytest

from tests.e2e._server import start_server, stop_server


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """One boxed server (legacy and modern models) for the whole test module."""
    server = start_server(tmp_path_factory.mktemp("box") / "root")
    try:
        yield server
    finally:
        stop_server(server)
