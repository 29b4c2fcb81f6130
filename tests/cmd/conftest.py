"""Fixtures of the tests that start ``deepaas-run`` processes."""

import os
import uuid
from pathlib import Path

import pytest

# The fixtures that start servers, for every test module here.
from tests.cmd.test_run import reaper, start  # noqa: F401

SLOW_PKG = Path(__file__).parent.parent / "fixtures" / "slow_pkg"


def _dist_info(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """A ``*.dist-info`` with model entry points: all that stevedore looks for."""
    dist_info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n"
    )
    lines = [f"{key} = {value}" for key, value in entry_points.items()]
    (dist_info / "entry_points.txt").write_text(
        "[deepaas.v2.model]\n" + "\n".join(lines) + "\n"
    )


@pytest.fixture
def slow_pythonpath(tmp_path):
    """PYTHONPATH that adds the ``slow`` fixture model (never installed)."""
    # A unique directory: stevedore's on-disk cache is keyed by sys.path entries.
    site = tmp_path / f"site-{uuid.uuid4().hex}"
    _dist_info(site, "deepaas-fixture-slow", {"slow": "deepaas_fixture_slow"})
    paths = [str(site), str(SLOW_PKG)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(paths)


@pytest.fixture
def server_tmp(tmp_path):
    """The TMPDIR of the servers a test starts: it must be empty once they stop."""
    path = tmp_path / "server-tmp"
    path.mkdir()
    return path
