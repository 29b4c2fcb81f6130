"""Fixtures shared by the whole test suite."""

import dataclasses
import os
import socket
import sys
import uuid
from pathlib import Path

import pytest
from stevedore.extension import ExtensionManager

from deepaas.api import create_app
from deepaas.config import Config
from deepaas.model import load_models

FIXTURES = Path(__file__).parent / "fixtures"


# --- Application --------------------------------------------------------------------


@pytest.fixture
def state_dir(tmp_path):
    """A private state directory: tests never write in the home directory."""
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def config(state_dir):
    return Config(warm=True, state_dir=str(state_dir))


@pytest.fixture
def models():
    return load_models(["legacy", "modern", "static"])


@pytest.fixture
def app(config, models):
    return create_app(config, models)


@pytest.fixture
async def client(aiohttp_client, app):
    return await aiohttp_client(app)


# --- Processes ----------------------------------------------------------------------


@pytest.fixture
def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Throwaway environment with the broken model package -----------------------------
#
# tests/fixtures/broken_pkg must never be installed into the shared virtualenv: a
# model that fails to load is an error, so "serve every installed model" would fail
# for everyone. Instead a test gets a temporary ``*.dist-info`` (which is all
# importlib.metadata, hence stevedore, needs to find the entry points) plus the
# package's source directory, on sys.path only for that test, or on PYTHONPATH of a
# subprocess. Keep BROKEN_ENTRY_POINTS in step with broken_pkg/pyproject.toml.

BROKEN_PKG = FIXTURES / "broken_pkg"
BROKEN_ENTRY_POINTS = {
    "broken": "deepaas_fixture_broken",
    "needsargs": "deepaas_fixture_broken_class:NeedsArgsModel",
}
_BROKEN_MODULES = ("deepaas_fixture_broken", "deepaas_fixture_broken_class")


@dataclasses.dataclass(frozen=True)
class BrokenEnv:
    """Where the throwaway distribution lies."""

    site_dir: Path  # holds deepaas_fixture_broken-0.1.0.dist-info
    package_dir: Path  # holds the modules
    cache_dir: Path  # an empty XDG_CACHE_HOME, for subprocesses

    @property
    def paths(self) -> list[str]:
        return [str(self.site_dir), str(self.package_dir)]

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        """``os.environ`` plus PYTHONPATH (and a private stevedore cache)."""
        pythonpath = [*self.paths]
        if os.environ.get("PYTHONPATH"):
            pythonpath.append(os.environ["PYTHONPATH"])
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(pythonpath),
            # stevedore caches entry points on disk under $XDG_CACHE_HOME.
            "XDG_CACHE_HOME": str(self.cache_dir),
            **extra,
        }


@pytest.fixture
def broken_env(tmp_path):
    """A temporary dist-info for ``deepaas-fixture-broken`` (not on sys.path yet)."""
    # A unique directory name: stevedore's on-disk cache is keyed by the sys.path
    # entries (and coarse mtimes), so a reused path could hit a stale entry.
    site = tmp_path / f"site-{uuid.uuid4().hex}"
    dist_info = site / "deepaas_fixture_broken-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: deepaas-fixture-broken\nVersion: 0.1.0\n"
    )
    lines = [f"{name} = {value}" for name, value in BROKEN_ENTRY_POINTS.items()]
    (dist_info / "entry_points.txt").write_text(
        "[deepaas.v2.model]\n" + "\n".join(lines) + "\n"
    )
    cache = tmp_path / "xdg-cache"
    cache.mkdir()
    return BrokenEnv(site_dir=site, package_dir=BROKEN_PKG, cache_dir=cache)


@pytest.fixture
def broken_installed(broken_env, monkeypatch):
    """The broken models visible in this process, for this test only."""
    # Besides its on-disk cache (keyed by sys.path, so a new entry is a miss),
    # stevedore keeps a process-wide ENTRY_POINT_CACHE by namespace that ignores
    # sys.path: give this test an empty one; the original comes back afterwards.
    monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})
    monkeypatch.syspath_prepend(str(broken_env.package_dir))
    monkeypatch.syspath_prepend(str(broken_env.site_dir))
    yield broken_env
    for module in _BROKEN_MODULES:
        sys.modules.pop(module, None)
