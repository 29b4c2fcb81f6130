"""Arguments and output files of ``deepaas-cli`` methods.

Each ``--<name>`` option of ``predict`` and ``train`` comes from the model's field
declaration: argparse converts the text (``int``, ``float``, booleans, list and dict
literals, file paths), then the whole set is validated by a schema built from the
same fields, so the messages are those the server gives. Results are written as
2.x's ``deepaas-cli`` did: see :func:`output_path`.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import logging
import mimetypes
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, NoReturn

import marshmallow
from marshmallow import fields as ma

from deepaas.exceptions import InvalidModelResponse
from deepaas.model import _fields
from deepaas.model.v2.wrapper import ACCEPT, JSON, ReturnedFile, UploadedFile

__all__ = [
    "PROG",
    "CliExit",
    "MethodArgs",
    "Parser",
    "chunks",
    "is_json",
    "open_output",
    "output_path",
    "public",
    "to_bool",
]

PROG = "deepaas-cli"
OUTPUT_OPTIONS = ("--deepaas_method_output", "--deepaas-method-output")
OUTPUT_DEST = "deepaas_method_output"

_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off"})
_OCTET_STREAM = "application/octet-stream"
_CHUNK = 256 * 1024
_LOG = logging.getLogger("deepaas.cli")


class CliExit(Exception):
    """Stop the command with ``status``; what had to be said is already printed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`CliExit` instead of exiting."""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """Print ``message`` (if any) to standard error and raise :class:`CliExit`."""
        if message:
            sys.stderr.write(message)
        raise CliExit(status)

    def error(self, message: str) -> NoReturn:
        """Report a usage error the argparse way, then raise :class:`CliExit` (2)."""
        self.fail([message])

    def fail(self, messages: Sequence[str]) -> NoReturn:
        """Print the usage and one ``deepaas-cli: error:`` line per message."""
        self.print_usage(sys.stderr)
        for message in messages:
            sys.stderr.write(f"{PROG}: error: {message}\n")
        raise CliExit(2)


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    # Raw text keeps the one-fact-per-line help of 2.x.
    return argparse.RawTextHelpFormatter(prog, max_help_position=10)


def to_bool(text: str) -> bool | str:
    """Read a boolean; other text is left for the field to accept or reject."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return text


def _literal(expected: type, example: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        value: Any
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            try:
                value = json.loads(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"invalid {expected.__name__} literal: {text!r} "
                    f"(write it as Python or JSON, e.g. {example})"
                ) from None
        if isinstance(value, tuple) and expected is list:
            value = list(value)
        if not isinstance(value, expected):
            raise argparse.ArgumentTypeError(
                f"expected a {expected.__name__} like {example}, "
                f"got {type(value).__name__}: {text!r}"
            )
        return value

    return convert


def _kind(field: ma.Field[Any]) -> tuple[Callable[[str], Any], str]:
    """The argparse converter of a field and the type named in its help."""
    if _fields.is_file(field):
        return str, "file path"
    if isinstance(field, ma.Boolean):
        return to_bool, "bool (true/false, yes/no, 1/0)"
    if isinstance(field, ma.Integer):
        return int, "int"
    if isinstance(field, ma.Float):
        return float, "float"
    if isinstance(field, (ma.List, ma.Tuple)):
        return _literal(list, '"[1, 2]"'), 'list, as a literal: "[...]"'
    if isinstance(field, ma.Nested) and field.many:
        return _literal(list, '"[{...}]"'), 'list, as a literal: "[{...}]"'
    if isinstance(field, (ma.Mapping, ma.Nested)):
        return _literal(dict, '"{\\"key\\": 1}"'), 'dict, as a literal: "{...}"'
    if isinstance(field, ma.String):
        return str, "str"
    return str, f"str ({type(field).__name__})"


class MethodArgs:
    """The arguments of one model method on the command line.

    Args:
        method: ``predict``, ``train``... (the sub-command).
        fields: The method's declared fields, by attribute name.
        accept_choices: Media types the model offers for ``predict``; ``accept``
            is then chosen among them instead of being validated as a string.
    """

    def __init__(
        self,
        method: str,
        fields: _fields.FieldMap,
        accept_choices: Sequence[str] | None = None,
    ) -> None:
        self.method = method
        self.fields = fields
        self.accept_choices = list(accept_choices or [])
        self.options = {name: f.data_key or name for name, f in fields.items()}
        self.files = frozenset(n for n, f in fields.items() if _fields.is_file(f))
        # As the server: ``accept`` is chosen among the offered types, not loaded.
        plain = {n: f for n, f in fields.items() if not self._negotiated(n)}
        self.schema = marshmallow.Schema.from_dict(plain, name="Arguments")()

    def _negotiated(self, name: str) -> bool:
        return name == ACCEPT and bool(self.accept_choices)

    def parser(self, help_text: str) -> Parser:
        """Build the ``deepaas-cli <method>`` parser, one option per field."""
        parser = Parser(
            prog=f"{PROG} {self.method}",
            description=help_text,
            formatter_class=_help_formatter,
        )
        for name, field in self.fields.items():
            self._add(parser, name, field)
        options = {f"--{option}" for option in self.options.values()}
        if not options.intersection(OUTPUT_OPTIONS):
            parser.add_argument(
                *OUTPUT_OPTIONS,
                dest=OUTPUT_DEST,
                metavar="FILE",
                default=argparse.SUPPRESS,
                help="Write the result to FILE (as the global option does).",
            )
        return parser

    def _add(self, parser: Parser, name: str, field: ma.Field[Any]) -> None:
        convert, type_name = _kind(field)
        shown = (
            self.accept_choices if self._negotiated(name) else _fields.choices(field)
        )
        default = _fields.default(field)
        required = field.required and default is marshmallow.missing
        lines = [_fields.description(field), f"Type: {type_name}"]
        if required:
            lines.append("*Required*")
        elif default is not marshmallow.missing:
            lines.append(f"Default: {default}")
        if shown:
            lines.append(f"Choices: {', '.join(str(c) for c in shown)}")
        extra: dict[str, Any] = {}
        if isinstance(field, ma.Boolean):
            # ``--flag`` alone means true; 2.x required a value, still accepted.
            extra = {"nargs": "?", "const": True, "metavar": "{true,false}"}
        if shown:
            extra["metavar"] = "{" + ",".join(str(c) for c in shown) + "}"
        parser.add_argument(
            f"--{self.options[name]}",
            dest=name,
            type=convert,
            required=required,
            default=argparse.SUPPRESS,
            help="\n".join(line for line in lines if line).replace("%", "%%"),
            **extra,
        )

    @contextlib.contextmanager
    def load(
        self, parser: Parser, namespace: argparse.Namespace
    ) -> Iterator[dict[str, Any]]:
        """Validate the parsed options into the method's keyword arguments.

        Files are copied to a temporary directory, removed on exit, so that a model
        that deletes or moves its input (as 2.x allowed) never touches the original.

        Raises:
            CliExit: With status 2 after printing the errors, each naming its option.
        """
        given = {n: getattr(namespace, n) for n in self.fields if hasattr(namespace, n)}
        for name in self.files.intersection(given):
            path = str(given[name])
            if not os.path.isfile(path):
                parser.error(f"argument --{self.options[name]}: no such file: {path!r}")
            given[name] = UploadedFile(
                name=self.options[name],
                filename=path,
                content_type=mimetypes.guess_type(path)[0] or _OCTET_STREAM,
                original_filename=os.path.basename(path),
            )
        accept = None
        if self.accept_choices:
            accept = self._accept(parser, given.pop(ACCEPT, None))
        data = {self.options[n]: v for n, v in given.items()}
        try:
            kwargs: dict[str, Any] = self.schema.load(data)
        except marshmallow.ValidationError as err:
            parser.fail(_error_lines(err.messages))
        if accept is not None:
            kwargs[ACCEPT] = accept
        uploads = [n for n in self.files.intersection(kwargs) if kwargs[n] is not None]
        if not uploads:
            yield kwargs
            return
        with tempfile.TemporaryDirectory(prefix="deepaas-cli-") as tmpdir:
            for name in uploads:
                upload = kwargs[name]
                if isinstance(upload, UploadedFile) and upload.filename:
                    copy = os.path.join(tmpdir, f"{name}-{upload.original_filename}")
                    shutil.copyfile(upload.filename, copy)
                    kwargs[name] = upload._replace(filename=copy)
            yield kwargs

    def _accept(self, parser: Parser, value: Any) -> str:
        if value is None:
            default = _fields.default(self.fields[ACCEPT])
            if default in self.accept_choices:
                return str(default)
            return self.accept_choices[0]
        wanted = str(value).strip().lower()
        found = [c for c in self.accept_choices if c.lower() == wanted]
        if not found:
            parser.error(
                f"argument --{self.options[ACCEPT]}: "
                f"Must be one of: {', '.join(self.accept_choices)}."
            )
        return found[0]


def _error_lines(messages: Any) -> list[str]:
    if not isinstance(messages, Mapping):
        return [_flatten(messages)]
    lines = []
    for key, value in messages.items():
        text = _flatten(value)
        lines.append(text if key == "_schema" else f"argument --{key}: {text}")
    return lines


def _flatten(messages: Any) -> str:
    if isinstance(messages, Mapping):
        return "; ".join(f"[{k}] {_flatten(v)}" for k, v in messages.items())
    if isinstance(messages, (list, tuple)):
        return " ".join(_flatten(m) for m in messages)
    return str(messages)


def public(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as reported back (files by their description), as the server."""
    shown: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, UploadedFile):
            value = {
                "name": value.name,
                "content_type": value.content_type,
                "original_filename": value.original_filename,
            }
        shown[key] = value
    return shown


def open_output(path: str) -> IO[bytes]:
    """Open ``path`` for writing, creating its directory as 2.x did."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    return open(path, "wb")


def is_json(media_type: str) -> bool:
    """Whether a prediction in ``media_type`` is written as JSON (as the server)."""
    return media_type in (JSON, "*/*") or media_type.endswith("+json")


def output_path(output: str, media_type: str) -> str:
    """Where a prediction in ``media_type`` asked to go to ``output`` is written.

    As 2.x: when the extension of ``output`` is not one of ``media_type``'s, that
    type's extension is appended (``out.png`` for JSON becomes ``out.png.json``) and
    a warning says so.
    """
    if is_json(media_type):
        extension: str | None = ".json"
        accepted = [".json"]
    else:
        extension = mimetypes.guess_extension(media_type)
        accepted = mimetypes.guess_all_extensions(media_type)
    current = os.path.splitext(output)[1]
    if extension is None or current.lower() in accepted:
        return output
    new = output + extension
    _LOG.warning(
        "You are trying to store %s type data in the file with %s extension!\n"
        "===================> New output is %s",
        extension,
        current,
        new,
    )
    return new


def chunks(result: Any) -> Iterator[bytes]:
    """The bytes of a binary prediction: bytes, a file, a path or a handle.

    Raises:
        InvalidModelResponse: A ``ReturnedFile`` without a path.
    """
    if isinstance(result, (bytes, bytearray, memoryview)):
        yield bytes(result)
        return
    if isinstance(result, ReturnedFile):
        if not result.filename:
            raise InvalidModelResponse("The model returned a file without a path")
        result = result.filename
    if isinstance(result, (str, os.PathLike)):
        with open(result, "rb") as handle:
            yield from _read(handle)
    else:
        with contextlib.closing(result):
            yield from _read(result)


def _read(handle: Any) -> Iterator[bytes]:
    while chunk := handle.read(_CHUNK):
        yield chunk if isinstance(chunk, bytes) else str(chunk).encode()
