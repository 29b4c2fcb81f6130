"""``deepaas-cli`` end to end, in-process, against the installed fixture models."""

import json
import logging
import os

import deepaas_fixture_legacy
import pytest
from marshmallow import fields, validate

from deepaas.cmd import cli
from deepaas.exceptions import ModelLoadError
from deepaas.model import loading
from deepaas.model.v2.wrapper import ReturnedFile

LEGACY = ["--model-name", "legacy"]


@pytest.fixture(autouse=True)
def _no_model_env(monkeypatch):
    monkeypatch.delenv("DEEPAAS_V2_MODEL", raising=False)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def predict_json(capsys, *args):
    code, out, err = run(capsys, *LEGACY, "predict", *args)
    assert code == 0, err
    return json.loads(out)


# get_metadata -----------------------------------------------------------------


def test_get_metadata_prints_json(capsys):
    code, out, _ = run(capsys, *LEGACY, "get_metadata")
    assert code == 0
    assert json.loads(out) == deepaas_fixture_legacy.get_metadata()


def test_get_metadata_to_file_creates_directory(capsys, tmp_path):
    target = tmp_path / "sub" / "meta.json"
    code, out, err = run(
        capsys, *LEGACY, "--deepaas_method_output", str(target), "get_metadata"
    )
    assert code == 0
    assert out == ""
    assert json.loads(target.read_text()) == deepaas_fixture_legacy.get_metadata()
    assert f"Output is saved in {target}" in err


@pytest.mark.parametrize("where", ["global", "method"])
def test_dashed_output_option_is_accepted(capsys, tmp_path, where):
    target = tmp_path / "meta.json"
    option = ["--deepaas-method-output", str(target)]
    argv = [*LEGACY, *option, "get_metadata"]
    if where == "method":
        argv = [*LEGACY, "get_metadata", *option]
    code, _, _ = run(capsys, *argv)
    assert code == 0
    assert json.loads(target.read_text())["name"] == "legacy-model"


def test_no_method_falls_back_to_get_metadata(capsys):
    code, out, err = run(capsys, *LEGACY)
    assert code == 0
    assert json.loads(out)["name"] == "legacy-model"
    assert "No method was requested" in err


def test_warm(capsys, monkeypatch):
    monkeypatch.setattr(deepaas_fixture_legacy, "_WARMED", False)
    code, out, err = run(capsys, *LEGACY, "warm")
    assert code == 0
    assert out == ""
    assert deepaas_fixture_legacy._WARMED is True
    assert "Finished warm() method" in err


# predict arguments ----------------------------------------------------------------


def test_predict_typed_arguments_and_defaults(capsys):
    body = predict_json(
        capsys, "--message", "hi", "--count", "3", "--ratio", "0.25", "--choice", "b"
    )
    assert body == {
        "message": "hi",
        "count": 3,
        "ratio": 0.25,
        "flag": False,
        "fail": False,
        "choice": "b",
        "accept": "application/json",
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["True"], True),
        (["true"], True),
        (["1"], True),
        (["yes"], True),
        ([], True),
        (["False"], False),
        (["false"], False),
        (["0"], False),
        (["no"], False),
    ],
)
def test_bool_parsing(capsys, given, expected):
    assert predict_json(capsys, "--flag", *given)["flag"] is expected


def test_bool_rejects_nonsense(capsys):
    code, _, err = run(capsys, *LEGACY, "predict", "--flag", "maybe")
    assert code == 2
    assert "deepaas-cli: error: argument --flag: Not a valid boolean." in err


@pytest.mark.parametrize("literal", ["[1, 2, 3]", "(1, 2, 3)", "[1,2,3]"])
def test_list_literal(capsys, literal):
    assert predict_json(capsys, "--numbers", literal)["numbers"] == [1, 2, 3]


def test_list_items_are_validated_by_the_field(capsys):
    code, _, err = run(capsys, *LEGACY, "predict", "--numbers", "[1, 'x']")
    assert code == 2
    assert "argument --numbers: [1] Not a valid integer." in err


def test_list_must_be_a_list_literal(capsys):
    code, _, err = run(capsys, *LEGACY, "predict", "--numbers", "5")
    assert code == 2
    assert "argument --numbers: expected a list" in err


def test_bad_int_names_the_argument(capsys):
    code, _, err = run(capsys, *LEGACY, "predict", "--count", "many")
    assert code == 2
    assert "argument --count: invalid int value: 'many'" in err


def test_validator_messages_are_the_servers(capsys):
    code, _, err = run(capsys, *LEGACY, "predict", "--count", "11")
    assert code == 2
    assert (
        "deepaas-cli: error: argument --count: Must be greater than or equal to 0 "
        "and less than or equal to 10." in err
    )


def test_bad_choice(capsys):
    code, out, err = run(capsys, *LEGACY, "predict", "--choice", "z")
    assert code == 2
    assert out == ""
    assert "deepaas-cli: error: argument --choice: Must be one of: a, b, c." in err
    assert "usage: deepaas-cli predict" in err


def test_several_errors_are_all_reported(capsys):
    code, _, err = run(capsys, *LEGACY, "predict", "--choice", "z", "--count", "-1")
    assert code == 2
    assert "argument --choice:" in err
    assert "argument --count:" in err


def test_required_argument(capsys):
    code, _, err = run(capsys, "--model-name", "modern", "predict")
    assert code == 2
    assert "the following arguments are required: --text" in err


def test_unknown_method_argument(capsys):
    code, _, err = run(capsys, *LEGACY, "predict", "--nope", "1")
    assert code == 2
    assert "unrecognized arguments: --nope 1" in err


def test_file_argument_is_a_copy_of_the_path(capsys, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    body = predict_json(capsys, "--image", str(image))
    upload = body["image"]
    assert upload["name"] == "image"
    assert upload["content_type"] == "image/png"
    assert upload["original_filename"] == "cat.png"
    assert upload["size"] == len(b"\x89PNG fake")
    # The model got a temporary copy, removed afterwards; the original is kept.
    assert upload["filename"] != str(image)
    assert not os.path.exists(upload["filename"])
    assert image.exists()


def test_file_of_unknown_type_is_octet_stream(capsys, tmp_path):
    data = tmp_path / "blob.unknownext"
    data.write_bytes(b"x")
    body = predict_json(capsys, "--image", str(data))
    assert body["image"]["content_type"] == "application/octet-stream"


def test_missing_file(capsys, tmp_path):
    missing = tmp_path / "nope.png"
    code, _, err = run(capsys, *LEGACY, "predict", "--image", str(missing))
    assert code == 2
    assert f"argument --image: no such file: '{missing}'" in err


# predict output -----------------------------------------------------------------


def test_json_to_file_with_another_extension_gets_json_appended(capsys, tmp_path):
    target = tmp_path / "out.png"
    code, out, err = run(
        capsys, *LEGACY, "--deepaas_method_output", str(target), "predict"
    )
    assert code == 0
    assert out == ""
    assert not target.exists()
    written = tmp_path / "out.png.json"
    assert json.loads(written.read_text())["message"] == "hello"
    assert "You are trying to store .json type data" in err
    assert f"New output is {written}" in err


def test_json_to_json_file_keeps_the_name(capsys, tmp_path):
    target = tmp_path / "out.json"
    code, _, err = run(
        capsys, *LEGACY, "--deepaas_method_output", str(target), "predict"
    )
    assert code == 0
    assert json.loads(target.read_text())["count"] == 1
    assert "New output is" not in err


def test_binary_prediction_to_file(capsys, tmp_path):
    target = tmp_path / "pred.png"
    code, _, err = run(
        capsys, *LEGACY, "predict", "--accept", "image/png",
        "--deepaas_method_output", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert target.read_bytes() == deepaas_fixture_legacy.PNG_BYTES
    assert "New output is" not in err


def test_binary_prediction_to_file_without_extension(capsys, tmp_path):
    target = tmp_path / "pred"
    code, _, err = run(
        capsys, *LEGACY, "--deepaas_method_output", str(target),
        "predict", "--accept", "image/png",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "pred.png").read_bytes() == deepaas_fixture_legacy.PNG_BYTES
    assert f"New output is {target}.png" in err


def test_binary_prediction_to_stdout(capsysbinary):
    code = cli.main([*LEGACY, "predict", "--accept", "image/png"])
    assert code == 0
    assert capsysbinary.readouterr().out == deepaas_fixture_legacy.PNG_BYTES


def test_text_prediction(capsys):
    code, out, _ = run(capsys, *LEGACY, "predict", "--accept", "text/plain")
    assert code == 0
    assert out.startswith("legacy says: accept=text/plain")


def test_unoffered_accept(capsys):
    code, _, err = run(capsys, *LEGACY, "predict", "--accept", "text/html")
    assert code == 2
    assert "argument --accept: Must be one of: application/json" in err


def test_response_schema_is_enforced(capsys):
    code, out, err = run(
        capsys, "--model-name", "modern", "predict", "--text", "x",
        "--bad_response", "true",
    )  # fmt: skip
    assert code == 1
    assert out == ""
    assert "does not match its schema" in err


def test_predict_warms_first_unless_nowarm(capsys, monkeypatch):
    monkeypatch.setattr(deepaas_fixture_legacy, "_WARMED", False)
    assert run(capsys, *LEGACY, "--nowarm", "predict")[0] == 0
    assert deepaas_fixture_legacy._WARMED is False
    assert run(capsys, *LEGACY, "predict")[0] == 0
    assert deepaas_fixture_legacy._WARMED is True


def test_model_from_environment(capsys, monkeypatch):
    monkeypatch.setenv("DEEPAAS_V2_MODEL", "static")
    code, out, _ = run(capsys, "predict", "--x", "5")
    assert code == 0
    assert json.loads(out) == {"sum": 7}


# train ----------------------------------------------------------------------------


def test_train_record(capsys):
    code, out, err = run(capsys, "--model-name", "static", "train", "--epochs", "3")
    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "done"
    assert record["args"] == {"epochs": 3, "sleep": 0.0}
    assert record["result"]["output"] == {"epochs": 3, "loss": 0.2}
    assert set(record) == {"date", "args", "status", "uuid", "result"}
    assert set(record["result"]) == {"finish_date", "duration", "output"}
    assert "Elapsed time" in err


def test_train_to_file_keeps_the_name(capsys, tmp_path):
    target = tmp_path / "train.txt"
    code, _, err = run(
        capsys, "--model-name", "static", "--deepaas_method_output", str(target),
        "train",
    )  # fmt: skip
    assert code == 0
    assert json.loads(target.read_text())["result"]["output"]["epochs"] == 1
    assert "New output is" not in err


# model errors ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["predict", "train"])
def test_model_error_is_one_line_without_traceback(capsys, method):
    code, out, err = run(capsys, *LEGACY, method, "--fail", "true")
    assert code == 1
    assert out == ""
    assert f"deepaas-cli: error: Model 'legacy' {method}() failed: ValueError:" in err
    assert "Traceback" not in err


def test_model_error_traceback_with_debug(capsys):
    code, _, err = run(capsys, *LEGACY, "--debug", "predict", "--fail", "true")
    assert code == 1
    assert "Traceback" in err
    assert "ValueError: boom" in err


class _Minimal:
    def get_metadata(self):
        return {"name": "minimal"}


class _Async:
    warmed = False

    async def warm(self):
        type(self).warmed = True

    async def predict(self, **kwargs):
        return {"async": True, **kwargs}

    def get_predict_args(self):
        return {
            "n": fields.Int(load_default=2, metadata={"description": "50% of it"}),
            "options": fields.Dict(metadata={"description": "A mapping"}),
        }


class _Binary:
    def __init__(self, path):
        self.path = path

    def get_predict_args(self):
        return {
            "accept": fields.Str(
                load_default="image/png",
                validate=validate.OneOf(["image/png", "application/json"]),
            ),
            "kind": fields.Str(load_default="bytes"),
        }

    def predict(self, accept, kind):
        if kind == "returned":
            return ReturnedFile(filename=self.path)
        if kind == "path":
            return self.path
        if kind == "object":
            return object()
        if kind == "handle":
            return open(self.path, "rb")
        return b"PNGDATA"


@pytest.fixture
def fake_model(monkeypatch):
    def install(obj):
        wrapped = loading.wrap("fake", obj)
        monkeypatch.setattr(loading, "load_models", lambda names: {"fake": wrapped})
        return obj

    return install


def test_method_not_implemented(capsys, fake_model):
    fake_model(_Minimal())
    code, _, err = run(capsys, "--model-name", "fake", "predict")
    assert code == 1
    assert "deepaas-cli: error: Model 'fake' does not implement 'predict'" in err
    assert "Traceback" not in err


def test_async_methods_are_awaited(capsys, fake_model):
    model = fake_model(_Async())
    code, out, _ = run(capsys, "--model-name", "fake", "predict", "--n", "4")
    assert code == 0
    assert json.loads(out) == {"async": True, "n": 4}
    assert model.warmed is True


def test_dict_literal_python_or_json(capsys, fake_model):
    fake_model(_Async())
    for literal in ("{'a': True}", '{"a": true}'):
        code, out, err = run(
            capsys, "--model-name", "fake", "predict", "--options", literal
        )
        assert code == 0, err
        assert json.loads(out)["options"] == {"a": True}
    code, _, err = run(capsys, "--model-name", "fake", "predict", "--options", "[1]")
    assert code == 2
    assert "argument --options: expected a dict" in err


def test_help_survives_percent_signs(capsys, fake_model):
    fake_model(_Async())
    code, out, _ = run(capsys, "--model-name", "fake", "predict", "--help")
    assert code == 0
    assert "50% of it" in out


@pytest.mark.parametrize("kind", ["bytes", "returned", "path", "handle"])
def test_binary_results_are_written(capsys, fake_model, tmp_path, kind):
    source = tmp_path / "source.bin"
    source.write_bytes(b"PNGDATA")
    fake_model(_Binary(str(source)))
    target = tmp_path / "result.png"
    code, _, err = run(
        capsys, "--model-name", "fake", "--deepaas_method_output", str(target),
        "predict", "--kind", kind,
    )  # fmt: skip
    assert code == 0, err
    assert target.read_bytes() == b"PNGDATA"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "object"], "cannot be written as JSON: object"),
        (["--accept", "application/json"], "returned a file where JSON was expected"),
    ],
)
def test_unwritable_results(capsys, fake_model, tmp_path, args, message):
    fake_model(_Binary(str(tmp_path)))
    code, out, err = run(capsys, "--model-name", "fake", "predict", *args)
    assert code == 1
    assert out == ""
    assert message in err


def test_unwritable_log_file(capsys, tmp_path):
    log = tmp_path / "missing-dir" / "cli.log"
    code, _, err = run(capsys, *LEGACY, "--log-file", str(log), "get_metadata")
    assert code == 1
    assert "cannot open the log file" in err


# model selection ------------------------------------------------------------------


def test_unknown_model(capsys):
    code, _, err = run(capsys, "--model-name", "nope", "get_metadata")
    assert code == 2
    assert "model 'nope' is not installed" in err
    assert "legacy" in err


def test_several_models_installed_and_none_chosen(capsys):
    code, _, err = run(capsys, "get_metadata")
    assert code == 2
    assert "several models are installed" in err
    assert "legacy, modern, static" in err
    assert "DEEPAAS_V2_MODEL" in err


def test_single_installed_model_is_used(capsys, monkeypatch):
    monkeypatch.setattr(loading, "available_models", lambda: ["static"])
    code, out, _ = run(capsys, "get_metadata")
    assert code == 0
    assert json.loads(out)["name"] == "static-model"


def test_one_model_at_a_time(capsys):
    code, _, err = run(capsys, "--model-name", "legacy,static", "get_metadata")
    assert code == 2
    assert "one model at a time" in err


def test_load_error_is_one_line(capsys, monkeypatch):
    def broken(names):
        raise ModelLoadError("broken", "broken_pkg:Model: ImportError: no numpy")

    monkeypatch.setattr(loading, "load_models", broken)
    code, _, err = run(capsys, "--model-name", "broken", "get_metadata")
    assert code == 1
    assert err.strip() == (
        "deepaas-cli: error: Model 'broken' could not be loaded: "
        "broken_pkg:Model: ImportError: no numpy"
    )


# help and global options ----------------------------------------------------------


def test_method_help_lists_arguments_defaults_and_choices(capsys):
    code, out, _ = run(capsys, *LEGACY, "predict", "--help")
    assert code == 0
    assert "usage: deepaas-cli predict" in out
    for text in (
        "--count",
        "An integer between 0 and 10",
        "Default: 1",
        "Choices: a, b, c",
        "--choice {a,b,c}",
        "--image",
        "Type: file path",
        "--numbers",
    ):
        assert text in out


def test_method_help_marks_required(capsys):
    code, out, _ = run(capsys, "--model-name", "modern", "predict", "-h")
    assert code == 0
    assert "*Required*" in out


def test_global_help_lists_methods(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for method in ("get_metadata", "warm", "predict", "train"):
        assert method in out
    assert "--deepaas_method_output" in out
    assert "--model-name" in out


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == cli.deepaas.__version__


def test_unknown_global_option(capsys):
    code, _, err = run(capsys, "--nope", "get_metadata")
    assert code == 2
    assert "unrecognized arguments: --nope" in err


def test_multiprocessing_option_is_accepted_and_ignored(capsys):
    code, out, err = run(
        capsys, *LEGACY, "--deepaas_with_multiprocessing", "get_metadata"
    )
    assert code == 0
    assert json.loads(out)["name"] == "legacy-model"
    assert "--deepaas_with_multiprocessing is ignored" in err
    code, _, err = run(
        capsys, *LEGACY, "--nodeepaas_with_multiprocessing", "get_metadata"
    )
    assert code == 0
    assert "is ignored" in err


def test_log_file(capsys, tmp_path):
    log = tmp_path / "cli.log"
    code, _, err = run(capsys, *LEGACY, "--log-file", str(log), "get_metadata")
    assert code == 0
    assert "get_metadata was called." in log.read_text()
    assert "was called" not in err


def test_logging_is_restored():
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    assert cli.main([*LEGACY, "get_metadata"]) == 0
    assert (list(root.handlers), root.level) == before


def test_method_name_is_found_after_option_values():
    argv = ["--model-name", "predict", "--debug", "predict", "--n", "1", "train"]
    assert cli._split(argv) == (argv[:4], ["--n", "1", "train"])


def test_global_options_after_the_method_belong_to_the_method(capsys):
    code, _, err = run(capsys, *LEGACY, "predict", "--debug")
    assert code == 2
    assert "unrecognized arguments: --debug" in err


def test_bad_log_level_is_a_usage_error(capsys):
    code, _, err = run(capsys, *LEGACY, "--log-level", "LOUD", "get_metadata")
    assert code == 2
    assert "Invalid" in err
    assert "LOUD" in err
