import deepaas_fixture_plugin
import pytest
from stevedore.extension import ExtensionManager

from deepaas.api import create_app, load_plugins
from deepaas.api.plugins import NAMESPACE
from deepaas.config import Config
from deepaas.exceptions import ConfigurationError
from deepaas.model import load_models

STATE = deepaas_fixture_plugin.STATE


def test_load_named_plugin():
    plugins = load_plugins(["hello"])
    assert plugins == [("hello", deepaas_fixture_plugin.setup)]


def test_load_every_installed_plugin():
    names = [name for name, _ in load_plugins(None)]
    assert "hello" in names
    assert names == sorted(set(names))


def test_load_no_plugin():
    assert load_plugins([]) == []


def test_unknown_plugin_is_a_configuration_error_naming_it():
    with pytest.raises(ConfigurationError) as info:
        load_plugins(["hello", "no-such-plugin"])
    assert "no-such-plugin" in info.value.message
    assert "hello" not in info.value.message.replace(NAMESPACE, "")


async def test_plugin_route_and_hooks(aiohttp_client, config, models):
    app = create_app(config, models, plugins=load_plugins(["hello"]))
    state = app[STATE]
    assert state.events == []  # set up, but nothing ran before start-up

    client = await aiohttp_client(app)
    assert state.started
    assert state.context_open
    assert not state.cleaned_up

    resp = await client.get("/plugin/hello")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == {
        "hello": "world",
        "models": ["legacy", "modern", "static"],
    }

    await client.close()
    assert state.cleaned_up
    assert not state.context_open
    assert sorted(state.events) == ["context-enter", "context-exit", "startup"]
    assert state.events[-1] == "context-exit"


async def test_plugin_sees_the_served_models(aiohttp_client, config):
    app = create_app(config, load_models(["static"]), plugins=load_plugins(["hello"]))
    client = await aiohttp_client(app)
    resp = await client.get("/plugin/hello")
    assert (await resp.json())["models"] == ["static"]


async def test_plugin_route_under_base_path(aiohttp_client, models):
    config = Config(base_path="/base", warm=True)
    app = create_app(config, models, plugins=load_plugins(["hello"]))
    client = await aiohttp_client(app)

    resp = await client.get("/base/plugin/hello")
    assert resp.status == 200
    assert (await resp.json())["hello"] == "world"
    # The models are still served under the same base.
    assert (await client.get("/base/v2/models/")).status == 200

    assert (await client.get("/plugin/hello")).status == 404


async def test_no_plugin_no_route(client):
    assert (await client.get("/plugin/hello")).status == 404


# A plugin whose module fails to import: an error, never skipped.


@pytest.fixture
def broken_plugin(broken_env, monkeypatch):
    dist_info = broken_env.site_dir / "deepaas_fixture_broken_plugin-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: deepaas-fixture-broken-plugin\nVersion: 0.1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{NAMESPACE}]\nbadplugin = deepaas_fixture_broken:setup\n"
    )
    monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})
    monkeypatch.syspath_prepend(str(broken_env.package_dir))
    monkeypatch.syspath_prepend(str(broken_env.site_dir))
    return "badplugin"


def test_plugin_failing_to_import_is_a_configuration_error(broken_plugin):
    with pytest.raises(ConfigurationError) as info:
        load_plugins([broken_plugin])
    assert "badplugin" in info.value.message
    assert "tensorflow_for_tests" in info.value.message


def test_loading_every_plugin_fails_when_one_is_broken(broken_plugin):
    with pytest.raises(ConfigurationError, match="badplugin"):
        load_plugins(None)
