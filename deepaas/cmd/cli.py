"""``deepaas-cli``: run one method of one model from the command line, without a server.

::

    deepaas-cli [--model-name NAME] [--deepaas_method_output FILE] [--debug]
                {get_metadata,warm,predict,train} [--<argument> VALUE ...]

The global options are parsed first (oslo.config, as in 2.x); the model is then
loaded and the method's options are generated from its marshmallow field
declarations (see :mod:`deepaas.cmd._cli_args`). Exit status: 0 on success, 1 when
the model cannot be loaded or fails, 2 on a usage error.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import io
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from oslo_config import cfg

import deepaas
from deepaas.cmd import opts
from deepaas.cmd._cli_args import (
    OUTPUT_DEST,
    PROG,
    CliExit,
    MethodArgs,
    chunks,
    is_json,
    open_output,
    output_path,
    public,
)
from deepaas.exceptions import (
    DeepaasError,
    InvalidModelResponse,
    ModelCallError,
    ModelMethodNotImplemented,
    ModelNotFound,
)
from deepaas.log import setup_logging
from deepaas.model import loading
from deepaas.model.results import to_json
from deepaas.model.v2.wrapper import ACCEPT, JSON, ModelWrapper, ReturnedFile

__all__ = ["main"]

_LOG = logging.getLogger("deepaas.cli")

METHODS = {
    "get_metadata": "get_metadata method",
    "warm": "warm method, e.g. to prepare the model for execution",
    "predict": "predict method, use predict --help for the full list",
    "train": "train method, use train --help for the full list",
}

_CLI_OPTS = [
    # Long on purpose (as 2.x): it must not clash with a model's own arguments.
    cfg.StrOpt(
        "deepaas_method_output",
        deprecated_name="deepaas-method-output",
        metavar="FILE",
        help=(
            "Write the method's result to FILE instead of standard output. A "
            "prediction whose media type does not match the extension of FILE "
            "gets the right extension appended."
        ),
    ),
    cfg.BoolOpt(
        "deepaas_with_multiprocessing",
        help="Accepted for compatibility with 2.x and ignored: methods run in-process.",
    ),
]


def _add_methods(subparsers: Any) -> None:
    # Placeholders for the global help: a method's options exist only once the
    # model is loaded, and its arguments never reach this parser (see _split).
    subparsers.required = False
    for name, text in METHODS.items():
        subparsers.add_parser(name, help=text, add_help=False)


def _configure(argv: list[str]) -> Any:
    conf = cfg.ConfigOpts()
    opts.register_opts(conf, server=False)
    conf.register_cli_opts(
        [
            *_CLI_OPTS,
            cfg.SubCommandOpt(
                "methods",
                title="methods",
                handler=_add_methods,
                help='Use "<method> --help" for the options of each method.',
            ),
        ]
    )
    conf(
        argv,
        project="deepaas",
        prog=PROG,
        version=deepaas.__version__,
        default_config_files=[],
    )
    return conf


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` after the method name: (global part, method arguments).

    The method's arguments must not reach oslo.config's parser, which would reject
    any that abbreviates several global options (``--n``). The method name is the
    first one that is not the value of an option, found by parsing each prefix.
    """
    for index, token in enumerate(argv):
        if token not in METHODS:
            continue
        head = argv[: index + 1]
        sink = io.StringIO()
        with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            try:
                found = _configure(head).methods.name == token
            except (SystemExit, cfg.Error):
                found = False
        if found:
            return head, argv[index + 1 :]
    return argv, []


def _parse_globals(argv: list[str]) -> Any:
    try:
        return _configure(argv)
    except SystemExit as exc:
        # --help and --version exit with 0; usage errors, already printed, with 2
        # (argparse) or 1 (oslo.config, for a value it rejects): all are usage.
        raise CliExit(0 if not exc.code else 2) from None
    except cfg.Error as exc:
        _usage(str(exc))


def _usage(message: str) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise CliExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one method of one model in this process and return the exit status.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` if None.

    Returns:
        0 on success, 1 when the model cannot be loaded or fails, 2 on a usage
        error (as argparse), 130 when interrupted.
    """
    try:
        head, tail = _split(list(sys.argv[1:] if argv is None else argv))
        conf = _parse_globals(head)
        level = "DEBUG" if conf.debug else conf.log_level
        with _logging(level, conf.log_file, conf.log_format, debug=conf.debug):
            return _run(conf, tail)
    except CliExit as exc:
        return exc.status
    except KeyboardInterrupt:
        return 130


@contextlib.contextmanager
def _logging(
    level: str, log_file: str | None, fmt: str, *, debug: bool
) -> Iterator[None]:
    """Set up logging for the command, and restore the caller's afterwards."""
    root = logging.getLogger()
    saved, saved_level = list(root.handlers), root.level
    warnings_captured = getattr(logging, "_warnings_showwarning", None) is not None
    try:
        setup_logging(level, log_file, fmt)
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: cannot open the log file: {exc}\n")
        raise CliExit(1) from None
    if not debug:
        for handler in root.handlers:
            handler.addFilter(_hide_traceback)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in saved:
                root.removeHandler(handler)
                handler.close()
        for handler in saved:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        if not warnings_captured:
            logging.captureWarnings(False)


def _hide_traceback(record: logging.LogRecord) -> bool:
    # The wrapper logs a model's traceback; the CLI shows it only with --debug.
    record.exc_info = None
    record.exc_text = None
    return True


def _run(conf: Any, args: list[str]) -> int:
    method: str | None = conf.methods.name
    if method is None:
        _LOG.warning("No method was requested! Return get_metadata()")
        method = "get_metadata"
    if conf.deepaas_with_multiprocessing is not None:
        _LOG.warning(
            "--deepaas_with_multiprocessing is ignored: deepaas-cli runs the "
            "model in this process"
        )
    try:
        model = _load_model(conf)
        fields = {"predict": model.predict_fields, "train": model.train_fields}
        accept = model.accept_choices if method == "predict" else None
        spec = MethodArgs(method, fields.get(method, {}), accept)
        parser = spec.parser(METHODS[method])
        namespace = parser.parse_args(args)
        output = getattr(namespace, OUTPUT_DEST, None) or conf.deepaas_method_output
        _LOG.info("%s was called.", method)
        with spec.load(parser, namespace) as kwargs:
            _call(model, method, spec, kwargs, output, warm=conf.warm)
    except DeepaasError as exc:
        if not isinstance(exc, ModelCallError):
            _LOG.debug("%s failed", method, exc_info=True)
        sys.stderr.write(f"{PROG}: error: {exc.message}\n")
        return 1
    except OSError as exc:
        _LOG.debug("%s failed", method, exc_info=True)
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    return 0


def _load_model(conf: Any) -> ModelWrapper:
    names = opts.model_names(conf, os.environ)
    if len(names) > 1:
        _usage(f"deepaas-cli runs one model at a time, got: {', '.join(names)}")
    if not names:
        installed = loading.available_models()
        if len(installed) > 1:
            _usage(
                f"several models are installed ({', '.join(installed)}); choose "
                f"one with --model-name or the {opts.MODEL_ENV} environment variable"
            )
        names = tuple(installed)
    try:
        models = loading.load_models(names)
    except ModelNotFound as exc:
        installed = loading.available_models()
        _usage(
            f"model {exc.name!r} is not installed; installed models: "
            f"{', '.join(installed) or 'none'}"
        )
    return next(iter(models.values()))


def _call(
    model: ModelWrapper,
    method: str,
    spec: MethodArgs,
    kwargs: dict[str, Any],
    output: str | None,
    *,
    warm: bool,
) -> None:
    if method == "get_metadata":
        _emit_text(to_json(model.metadata()), output)
    elif method == "warm":
        _warm(model)
        _LOG.info("return: Finished warm() method")
    elif method == "predict":
        if warm:
            _warm(model)
        media_type = kwargs.get(ACCEPT, JSON) if spec.accept_choices else JSON
        _emit_prediction(model, _invoke(model, "predict", kwargs), media_type, output)
    else:
        if warm:
            _warm(model)
        start = datetime.datetime.now()
        result = _invoke(model, "train", kwargs)
        end = datetime.datetime.now()
        _LOG.info("Elapsed time:  %s", end - start)
        # The record of 2.x's deepaas-cli, kept so that scripts reading it work.
        record = {
            "date": str(start),
            "args": json.loads(json.dumps(public(kwargs), default=str)),
            "status": "done",
            "uuid": uuid.uuid4().hex,
            "result": {
                "finish_date": str(end),
                "duration": str(end - start),
                "output": result,
            },
        }
        _emit_text(to_json(record), output)


def _invoke(model: ModelWrapper, method: str, kwargs: dict[str, Any]) -> Any:
    result = model.call(method, **kwargs)
    if inspect.iscoroutine(result):
        return asyncio.run(model.finish(method, result))
    return result


def _warm(model: ModelWrapper) -> None:
    if not model.has("warm"):
        return
    try:
        _invoke(model, "warm", {})
    except ModelMethodNotImplemented:
        _LOG.debug("Model %r does not implement warm()", model.name)


def _is_binary(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview, ReturnedFile, os.PathLike)):
        return True
    if isinstance(value, str):
        return os.path.isfile(value)
    return isinstance(value, io.IOBase) or hasattr(value, "read")


def _emit_prediction(
    model: ModelWrapper, result: Any, media_type: str, output: str | None
) -> None:
    """Write a prediction as the server would send it, in ``media_type``."""
    target = output_path(output, media_type) if output else None
    if is_json(media_type):
        if _is_binary(result) and not isinstance(result, str):
            _close(result)
            raise InvalidModelResponse(
                f"Model '{model.name}' returned a file where JSON was expected"
            )
        model.validate_response(result)
        _emit_text(to_json(result), target)
    elif not _is_binary(result):
        _emit_text(result if isinstance(result, str) else to_json(result), target)
    elif target is None:
        sys.stdout.flush()
        sink = getattr(sys.stdout, "buffer", None)
        for chunk in chunks(result):
            if sink is None:
                sys.stdout.write(chunk.decode(errors="replace"))
            else:
                sink.write(chunk)
        sys.stdout.flush()
    else:
        with open_output(target) as handle:
            for chunk in chunks(result):
                handle.write(chunk)
        _LOG.info("return: Output is saved in %s", target)


def _emit_text(text: str, output: str | None) -> None:
    if output is None:
        print(text, flush=True)
        return
    with open_output(output) as handle:
        handle.write(text.encode())
    _LOG.info("return: Output is saved in %s", output)


def _close(result: Any) -> None:
    if isinstance(result, io.IOBase) or callable(getattr(result, "close", None)):
        result.close()
