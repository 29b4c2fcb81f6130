"""Security settings: refusing unsafe start-ups, and where values come from."""

import pytest

from deepaas.cmd import opts
from deepaas.config import Config, is_loopback
from deepaas.exceptions import ConfigurationError


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]
)
def test_loopback_addresses(host):
    assert is_loopback(host)
    assert Config(listen_ip=host).auth_enabled is False


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org", ""])
def test_other_addresses_without_auth_are_refused(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigurationError) as info:
        Config(listen_ip=host)
    message = info.value.message
    assert "without authentication" in message
    assert "--auth-token-file" in message
    assert "DEEPAAS_TOKENS" in message
    assert "--auth none" in message
    assert "DEEPAAS_AUTH=none" in message


def test_other_addresses_with_auth_or_explicitly_without():
    assert Config(listen_ip="0.0.0.0", auth_tokens="t predict").auth_enabled
    assert Config(listen_ip="0.0.0.0", auth_token_file="/x").auth_enabled
    oidc = Config(listen_ip="0.0.0.0", oidc_issuer="https://i", oidc_audience=("a",))
    assert oidc.auth_enabled
    assert Config(listen_ip="0.0.0.0", auth="none").auth_enabled is False


def test_debug_endpoint_off_loopback_needs_forcing():
    with pytest.raises(ConfigurationError, match="--force-debug-endpoint"):
        Config(listen_ip="0.0.0.0", auth_tokens="t admin", debug_endpoint=True)
    with pytest.raises(ConfigurationError, match="--force-debug-endpoint"):
        Config(listen_ip="0.0.0.0", auth="none", debug_endpoint=True)
    forced = Config(
        listen_ip="0.0.0.0",
        auth_tokens="t admin",
        debug_endpoint=True,
        force_debug_endpoint=True,
    )
    assert forced.debug_endpoint
    assert Config(debug_endpoint=True).debug_endpoint  # loopback: as 2.x


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"auth": "off"}, "auth must be one of auto, none"),
        ({"auth": "none", "auth_tokens": "t predict"}, "auth_tokens is set"),
        ({"oidc_issuer": "https://i"}, "oidc_issuer needs oidc_audience"),
        ({"oidc_audience": ("a",)}, "oidc_audience needs oidc_issuer"),
        (
            {
                "oidc_issuer": "https://i",
                "oidc_audience": ("a",),
                "oidc_jwks_file": "/k",
                "oidc_jwks_uri": "https://i/k",
            },
            "not both",
        ),
        ({"cors_origins": ("example.org",)}, "is not an origin"),
        ({"cors_origins": ("https://example.org/path",)}, "is not an origin"),
    ],
)
def test_inconsistent_security_settings(changes, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        Config(**changes)


def test_cors_origins_are_written_as_browsers_send_them():
    config = Config(
        cors_origins=("https://Portal.Example.org/", "https://a.org:443", "http://h:81")
    )
    assert config.cors_origins == (
        "https://portal.example.org",
        "https://a.org",
        "http://h:81",
    )


def test_defaults():
    config = opts.load_config([], environ={})
    assert config.auth == "auto"
    assert config.auth_enabled is False
    assert config.cors_origins == ()
    assert config.force_debug_endpoint is False
    assert config.oidc_scope_claims == ("scope", "scp")


def test_options_and_environment(tmp_path):
    config = opts.load_config(
        [
            "--listen-ip",
            "0.0.0.0",
            "--auth-token-file",
            str(tmp_path / "tokens"),
            "--oidc-issuer",
            "https://issuer.example.org",
            "--oidc-audience",
            "a,b",
            "--oidc-scope-claim",
            "roles",
            "--oidc-scope-prefix",
            "deepaas:",
            "--cors-origin",
            "https://one.example",
            "--cors-origin",
            "https://two.example",
        ],
        environ={opts.TOKENS_ENV: "env-token predict"},
    )
    assert config.auth_token_file == str(tmp_path / "tokens")
    assert config.auth_tokens == "env-token predict"
    assert config.oidc_audience == ("a", "b")
    assert config.oidc_scope_claims == ("roles",)
    assert config.oidc_scope_prefix == "deepaas:"
    assert config.cors_origins == ("https://one.example", "https://two.example")


def test_auth_none_from_environment_or_option():
    env = {opts.AUTH_ENV: "none"}
    assert opts.load_config(["--listen-ip", "0.0.0.0"], environ=env).auth == "none"
    # The option wins over the environment.
    with pytest.raises(ConfigurationError, match="without authentication"):
        opts.load_config(["--listen-ip", "0.0.0.0", "--auth", "auto"], environ=env)
    config = opts.load_config(["--listen-ip", "::", "--auth", "none"], environ={})
    assert config.auth == "none"


def test_config_file_refusal(tmp_path):
    path = tmp_path / "deepaas.conf"
    path.write_text("[DEFAULT]\nlisten_ip = 0.0.0.0\n")
    with pytest.raises(ConfigurationError, match=r"refusing to listen on 0\.0\.0\.0"):
        opts.load_config(["--config-file", str(path)], environ={})
    path.write_text("[DEFAULT]\nlisten_ip = 0.0.0.0\nauth = none\n")
    assert opts.load_config(["--config-file", str(path)], environ={}).auth == "none"
