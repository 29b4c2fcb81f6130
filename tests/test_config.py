import pytest

from deepaas.cmd import opts
from deepaas.config import Config
from deepaas.exceptions import ConfigurationError


def test_defaults_are_those_of_2x():
    config = opts.load_config([], environ={})
    assert (config.listen_ip, config.listen_port) == ("127.0.0.1", 5000)
    assert config.base_path == ""
    assert config.model_names == ()
    assert config.workers == 1
    assert config.warm is True
    assert config.debug_endpoint is False
    assert config.doc_endpoint is True
    assert config.train_endpoint is True
    assert config.predict_endpoint is True
    assert config.plugins is None
    assert config.job_store == "sqlite"


def test_new_limits_have_bounded_defaults():
    config = opts.load_config([], environ={})
    # Unlimited in 2.x; 0 still says so explicitly.
    assert config.client_max_size == 1024**3
    assert opts.load_config(["--client-max-size", "0"], environ={}).client_max_size == 0
    assert config.max_file_size == 0
    assert config.max_form_fields == 1000
    assert (config.max_header_size, config.max_headers) == (8190, 128)
    assert (config.header_timeout, config.body_timeout) == (30.0, 60.0)
    assert (config.shutdown_grace, config.shutdown_trainings) == (20.0, "interrupt")


def test_limit_and_shutdown_options():
    config = opts.load_config(
        [
            "--max-file-size=10",
            "--max-form-fields=5",
            "--max-header-size=100",
            "--max-headers=7",
            "--header-timeout=1.5",
            "--body-timeout=0",
            "--shutdown-grace=3",
            "--shutdown-trainings=finish",
        ],
        environ={},
    )
    assert (config.max_file_size, config.max_form_fields) == (10, 5)
    assert (config.max_header_size, config.max_headers) == (100, 7)
    assert (config.header_timeout, config.body_timeout) == (1.5, 0.0)
    assert (config.shutdown_grace, config.shutdown_trainings) == (3.0, "finish")


def test_state_dir_follows_xdg_state_home(tmp_path):
    config = opts.load_config([], environ={"XDG_STATE_HOME": str(tmp_path)})
    assert config.state_dir == str(tmp_path / "deepaas")


def test_state_dir_defaults_to_local_state(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = opts.load_config([], environ={})
    assert config.state_dir == str(tmp_path / ".local" / "state" / "deepaas")


def test_state_dir_and_job_store_options(tmp_path):
    config = opts.load_config(
        ["--state-dir", str(tmp_path), "--job-store", "memory"], environ={}
    )
    assert (config.state_dir, config.job_store) == (str(tmp_path), "memory")


def test_model_name_repeated_or_comma_separated():
    config = opts.load_config(
        ["--model-name", "a,b", "--model-name", "c", "--model-name", "a"], environ={}
    )
    assert config.model_names == ("a", "b", "c")


def test_model_name_from_environment():
    assert opts.load_config([], environ={"DEEPAAS_V2_MODEL": "x"}).model_names == ("x",)
    config = opts.load_config(["--model-name", "y"], environ={"DEEPAAS_V2_MODEL": "x"})
    assert config.model_names == ("y",)


def test_config_file(tmp_path):
    path = tmp_path / "deepaas.conf"
    path.write_text(
        "[DEFAULT]\nlisten_port = 8080\nbase_path = /deep/\nworkers = 3\nplugins =\n"
    )
    config = opts.load_config(["--config-file", str(path)], environ={})
    assert config.listen_port == 8080
    assert config.base_path == "/deep"
    assert config.workers == 3
    assert config.plugins == ()


def test_batching_options():
    assert (Config().max_batch_size, Config().max_batch_delay_ms) == (1, 5.0)
    config = opts.load_config(
        ["--max-batch-size", "32", "--max-batch-delay-ms", "2.5"], environ={}
    )
    assert (config.max_batch_size, config.max_batch_delay_ms) == (32, 2.5)


def test_debug_sets_log_level():
    assert opts.load_config(["--debug"], environ={}).log_level == "DEBUG"
    assert (
        opts.load_config(["--log-level", "WARNING"], environ={}).log_level == "WARNING"
    )


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"base_path": "deepaas"}, "must start with '/'"),
        ({"base_path": "/a//b"}, "empty segment"),
        ({"workers": 0}, "workers"),
        ({"max_train_processes": 0}, "max_train_processes"),
        ({"client_max_size": -1}, "client_max_size"),
        ({"listen_port": 70000}, "listen_port"),
        ({"job_store": "redis"}, "job_store"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_batch_delay_ms": -1}, "max_batch_delay_ms"),
        ({"max_file_size": -1}, "max_file_size"),
        ({"max_form_fields": -1}, "max_form_fields"),
        ({"body_timeout": -1}, "body_timeout"),
        ({"max_header_size": 0}, "max_header_size"),
        ({"max_headers": 0}, "max_headers"),
        ({"header_timeout": 0}, "header_timeout"),
        ({"shutdown_grace": -1}, "shutdown_grace"),
        ({"shutdown_trainings": "wait"}, "shutdown_trainings"),
    ],
)
def test_invalid_settings_name_the_setting(changes, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        Config(**changes)


def test_replace_validates_again():
    assert Config().replace(workers=4).workers == 4
    with pytest.raises(ConfigurationError):
        Config().replace(workers=0)


def test_list_opts_exposes_every_option():
    names = {opt.dest for _, group in opts.list_opts() for opt in group}
    assert {
        "listen_ip",
        "listen_port",
        "base_path",
        "model_name",
        "workers",
        "warm",
        "debug",
        "debug_endpoint",
        "doc_endpoint",
        "train_endpoint",
        "predict_endpoint",
        "client_max_size",
        "max_file_size",
        "max_form_fields",
        "header_timeout",
        "body_timeout",
        "shutdown_grace",
        "shutdown_trainings",
        "log_level",
        "log_file",
    } <= names
