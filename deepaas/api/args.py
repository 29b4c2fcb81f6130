"""Turn a request into the validated keyword arguments of a model method.

Arguments come from the query string and from the body (urlencoded form, multipart
form or a JSON object), merged in that order. Uploaded files are streamed to
temporary files (see :class:`Uploads`) and handed over as ``UploadedFile``; the
caller removes them with :meth:`Arguments.cleanup` or :meth:`Arguments.discard`.
The body is read
within the limits of a :class:`BodyOptions`: its size, each file's size, the
number of fields, and how long it may stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import marshmallow
from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import BadHttpMessage
from marshmallow import fields as mfields
from multidict import MultiDict, MultiMapping
from webargs.multidictproxy import MultiDictProxy as SchemaMultiDict

from deepaas.api._json_body import load_arguments
from deepaas.api.errors import RequestTimedOut, RequestTooLarge
from deepaas.api.keys import BODY
from deepaas.api.media import negotiate
from deepaas.config import Config
from deepaas.exceptions import ArgumentError, MalformedRequest, UnsupportedMediaType
from deepaas.model import _fields
from deepaas.model.v2.wrapper import ACCEPT, ModelWrapper, UploadedFile

__all__ = [
    "UPLOAD_PREFIX",
    "ArgSpec",
    "Arguments",
    "BodyOptions",
    "ModelArgs",
    "Uploads",
    "parse",
    "parse_query",
]

_CHUNK = 256 * 1024
# A text form field is an argument, not a payload: bound it.
_MAX_TEXT_FIELD = 8 * 1024 * 1024
_FORM = ("application/x-www-form-urlencoded", "multipart/form-data")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class BodyOptions:
    """How request bodies are read: their limits, and where uploads go.

    Attributes:
        max_size: Largest body in bytes; 0 means no limit.
        max_file_size: Largest uploaded file in bytes, each; 0 means only
            ``max_size`` applies.
        max_fields: Most query parameters and form fields in one request; 0
            means no limit.
        read_timeout: Seconds to wait for more of a body being read before
            giving up on it; 0 means no limit.
        upload_dir: Directory in which uploaded files are saved; ``None``
            means the system's temporary directory.
    """

    max_size: int = 0
    max_file_size: int = 0
    max_fields: int = 0
    read_timeout: float = 0.0
    upload_dir: str | None = None

    @classmethod
    def from_config(cls, config: Config, upload_dir: str | None = None) -> BodyOptions:
        """The options a server with ``config`` reads bodies with."""
        return cls(
            max_size=config.client_max_size,
            max_file_size=config.max_file_size,
            max_fields=config.max_form_fields,
            read_timeout=config.body_timeout,
            upload_dir=upload_dir,
        )


class ArgSpec:
    """A model method's declared arguments, compiled once into a schema."""

    def __init__(
        self, fields: _fields.FieldMap, accept_choices: Sequence[str] | None = None
    ) -> None:
        self.fields = fields
        self.accept_choices = list(accept_choices or [])
        self.files = frozenset(n for n, f in fields.items() if _fields.is_file(f))
        self.lists = frozenset(
            n for n, f in fields.items() if isinstance(f, (mfields.List, mfields.Tuple))
        )
        # ``accept`` is negotiated (header, */*, q-values), not validated as a string.
        plain = {
            n: f for n, f in fields.items() if not (n == ACCEPT and self.accept_choices)
        }
        self.schema = marshmallow.Schema.from_dict(plain, name="Arguments")()
        self._direct = _direct_fields(self.schema)

    def validate(
        self,
        data: MultiMapping[Any],
        accept_header: str | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Validate raw values; raises :class:`ArgumentError` naming every bad field.

        Each argument is taken from the query string, then the form, then the
        JSON body: the first place that has it wins (as 2.x).
        """
        json_body = json_body or {}
        errors: dict[str, Any] = {}
        accept = None
        if self.accept_choices:
            explicit = data.getall(ACCEPT, []) or (
                [json_body[ACCEPT]] if ACCEPT in json_body else []
            )
            requested = str(explicit[0]) if explicit else accept_header
            try:
                accept = negotiate(self.accept_choices, requested)
            except ArgumentError as err:
                errors.update(err.messages)
        if self.lists:
            # Only read (get, getall): any multidict does.
            proxy = SchemaMultiDict(data, self.schema)  # type: ignore[arg-type]
            values = {name: proxy[name] for name in self.schema.fields if name in data}
        else:
            values = {name: data[name] for name in self.schema.fields if name in data}
        for name, value in json_body.items():
            if name in self.schema.fields and name not in values:
                if name in self.lists and not isinstance(value, list):
                    value = [value]  # 2.x accepted a lone item for a list
                values[name] = value
        for name in self.files:
            if name in values and not isinstance(values[name], UploadedFile):
                del values[name]
                errors[name] = ["Expected an uploaded file (multipart/form-data)"]
        loaded = self._load(values, errors)
        if errors:
            order = list(self.fields)
            raise ArgumentError(
                dict(sorted(errors.items(), key=lambda kv: _position(order, kv[0])))
            )
        if accept is not None:
            loaded[ACCEPT] = accept
        return loaded

    def _load(self, values: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
        direct = self._direct
        if direct is None:
            try:
                loaded: dict[str, Any] = self.schema.load(values)
            except marshmallow.ValidationError as err:
                errors.update(_messages(err.messages))
                return {}
            return loaded
        # What Schema.load does for a schema of plain fields, without the
        # machinery (hooks, partial loading, nesting of errors) it cannot use:
        # each field still deserializes and validates itself.
        loaded = {}
        failed: dict[str, Any] = {}
        for name, field in direct:
            try:
                value = field.deserialize(values.get(name, _MISSING), name, values)
            except marshmallow.ValidationError as err:
                failed[name] = err.messages
                continue
            if value is not _MISSING:
                loaded[name] = value
        if failed:
            errors.update(_messages(failed))
            return {}
        return loaded


_MISSING = marshmallow.missing


def _direct_fields(
    schema: marshmallow.Schema,
) -> tuple[tuple[str, _fields.AnyField], ...] | None:
    # Fields that Schema.load would only deserialize one by one: none renamed,
    # and no hook (pre/post-load, validates) on the schema.
    if any(schema._hooks.values()):
        return None
    fields = tuple(schema.load_fields.items())
    if any(f.data_key is not None or f.attribute is not None for _, f in fields):
        return None
    return fields


def _position(order: list[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


class ModelArgs:
    """The compiled arguments of one model's ``predict`` and ``train``."""

    def __init__(self, model: ModelWrapper) -> None:
        self.predict = ArgSpec(model.predict_fields, model.accept_choices)
        self.train = ArgSpec(model.train_fields)


class Uploads:
    """The files one request's uploads were saved to, removed together.

    Each file is created in the upload directory (the server's own scratch
    directory) with a unique name, rather than in a directory of the request's:
    creating and removing a directory per request costs more than the
    small upload itself.
    """

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.paths: list[str] = []
        self.size = 0

    def create(self) -> tuple[int, str]:
        """A new empty file (descriptor and path), removed with the others."""
        fd, path = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=self.directory)
        self.paths.append(path)
        return fd, path

    def remove(self) -> None:
        """Remove the files (idempotent, safe to call from any thread)."""
        paths, self.paths = self.paths, []
        for path in paths:
            with contextlib.suppress(OSError):
                os.remove(path)


UPLOAD_PREFIX = "deepaas-upload-"
"""How the names of uploaded files begin."""

# Up to this many bytes of a request's uploads are written, and removed, on the
# event loop: a write into the page cache or an unlink of a small file takes
# less than handing it to a thread. Beyond, a slow disk could stall the loop.
_INLINE_FILE_BYTES = 1024 * 1024


class Arguments:
    """Validated arguments of one call, and the temporary files they refer to."""

    def __init__(
        self,
        values: dict[str, Any],
        files: dict[str, UploadedFile],
        uploads: Uploads | None,
    ) -> None:
        self.values = values
        self.files = files
        self._uploads = uploads

    def public(self) -> dict[str, Any]:
        """The arguments as shown back to clients: files by their description."""
        shown = dict(self.values)
        for key, upload in self.files.items():
            shown[key] = {
                "name": upload.name,
                "content_type": upload.content_type,
                "original_filename": upload.original_filename,
            }
        return _jsonable(shown)

    @property
    def has_files(self) -> bool:
        """Whether uploads are on disk, waiting for :meth:`cleanup`."""
        return self._uploads is not None and bool(self._uploads.paths)

    def cleanup(self) -> None:
        """Remove the uploaded files (idempotent, safe to call from any thread)."""
        if self._uploads is not None:
            self._uploads.remove()

    async def discard(self) -> None:
        """Remove the uploaded files, as :meth:`cleanup`, from the event loop.

        Large files are removed in a thread, which goes on even if the caller
        is cancelled meanwhile.
        """
        uploads = self._uploads
        if uploads is None or not uploads.paths:
            return
        if uploads.size <= _INLINE_FILE_BYTES:
            uploads.remove()
        else:
            await asyncio.shield(asyncio.to_thread(uploads.remove))


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    # Job records must survive a JSON store: anything exotic becomes its text.
    result: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return result


def parse_query(
    request: web.Request, spec: ArgSpec, options: BodyOptions | None = None
) -> Arguments | None:
    """The arguments of a request without a body, validated; ``None`` if it has one.

    The common case of calls whose arguments are all in the query string,
    without a coroutine: :func:`parse` reads bodies.

    Raises:
        ArgumentError: Validation failed (messages keyed by argument).
        RequestTooLarge: More query parameters than allowed.
    """
    if request.body_exists:
        return None
    if options is None:
        options = request.app[BODY]
    data = request.query
    if options.max_fields:
        _check_fields(len(data), options.max_fields)
    accept = request.headers.get("Accept") if spec.accept_choices else None
    return Arguments(spec.validate(data, accept), {}, None)


async def parse(
    request: web.Request,
    spec: ArgSpec,
    options: BodyOptions | None = None,
) -> Arguments:
    """Read, stream and validate the arguments declared by ``spec``.

    Args:
        request: The request to read.
        spec: The model method's declared arguments.
        options: Limits and upload directory; by default the application's.

    Raises:
        ArgumentError: Validation failed (messages keyed by argument).
        UnsupportedMediaType: The body has a type that cannot hold arguments.
        RequestTooLarge: The body, a file or the number of fields exceeds its
            limit.
        RequestTimedOut: The body stalled for longer than allowed.
    """
    if options is None:
        options = request.app[BODY]
    data: MultiDict[Any] = MultiDict(request.query)
    if options.max_fields:
        _check_fields(len(data), options.max_fields)
    json_body: dict[str, Any] = {}
    uploads: Uploads | None = None
    try:
        # Headers are parsed only when there is a body: most calls have none.
        if request.body_exists:
            max_size = options.max_size
            length = request.content_length
            if max_size and length and length > max_size:
                raise RequestTooLarge(
                    f"Request body of {length} bytes exceeds the limit of "
                    f"{max_size} bytes"
                )
            ctype = request.content_type
            if ctype == "multipart/form-data":
                uploads = Uploads(options.upload_dir)
                await _read_multipart(request, spec, data, uploads, options)
            elif ctype == "application/x-www-form-urlencoded":
                _read_form(request, await _read_body(request, options), data, options)
            elif ctype == "application/json" or ctype.endswith("+json"):
                json_body = _read_json(request, await _read_body(request, options))
            elif ctype != "application/octet-stream" or await _read_body(
                request, options
            ):
                raise UnsupportedMediaType(
                    f"Cannot read arguments from a '{ctype}' body; send a query "
                    "string, a form (urlencoded or multipart) or a JSON object"
                )
        accept = request.headers.get("Accept") if spec.accept_choices else None
        values = spec.validate(data, accept, json_body)
    except BaseException:
        if uploads is not None:
            uploads.remove()
        raise
    if uploads is None:
        return Arguments(values, {}, None)
    return Arguments(
        values,
        {k: v for k, v in values.items() if isinstance(v, UploadedFile)},
        uploads,
    )


if sys.version_info >= (3, 11):

    async def _within(awaitable: Awaitable[T], timeout: float) -> T:
        async with asyncio.timeout(timeout):
            return await awaitable

else:  # pragma: no cover (Python 3.10)

    async def _within(awaitable: Awaitable[T], timeout: float) -> T:
        return await asyncio.wait_for(awaitable, timeout)


async def _patiently(
    awaitable: Awaitable[T], stream: StreamReader, options: BodyOptions
) -> T:
    """Await a read of ``stream``, for at most ``options.read_timeout`` seconds."""
    if not options.read_timeout or stream.is_eof():
        # Nothing more to wait for: the whole body is in (the usual case of
        # small bodies), so spare the timer.
        return await awaitable
    try:
        return await _within(awaitable, options.read_timeout)
    except asyncio.TimeoutError:
        raise RequestTimedOut(
            f"The request body stalled: no data for {options.read_timeout:g} s"
        ) from None


async def _read_body(request: web.Request, options: BodyOptions) -> bytes:
    """The whole body, read chunk by chunk within the size and time limits."""
    body = bytearray()
    stream = request.content
    while chunk := await _patiently(stream.readany(), stream, options):
        body.extend(chunk)
        _check_size(len(body), options.max_size)
    return bytes(body)


def _read_form(
    request: web.Request, body: bytes, data: MultiDict[Any], options: BodyOptions
) -> None:
    if not body:
        return
    charset = request.charset or "utf-8"
    try:
        text = body.rstrip().decode(charset)
    except LookupError:
        raise UnsupportedMediaType(f"Unknown charset '{charset}'") from None
    except UnicodeDecodeError:
        raise MalformedRequest({"form": [f"The form is not valid {charset}"]}) from None
    left = options.max_fields - len(data) if options.max_fields else None
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, encoding=charset, max_num_fields=left
        )
    except ValueError:  # only raised for max_num_fields
        raise _too_many_fields(options.max_fields) from None
    data.extend(pairs)


def _read_json(request: web.Request, body: bytes) -> dict[str, Any]:
    return load_arguments(body, request.charset)


async def _read_multipart(
    request: web.Request,
    spec: ArgSpec,
    data: MultiDict[Any],
    uploads: Uploads,
    options: BodyOptions,
) -> None:
    # aiohttp signals a broken body (bad boundary, early EOF, bad part headers)
    # with these; none of our own code below raises them.
    try:
        await _read_parts(
            await request.multipart(), request.content, spec, data, uploads, options
        )
    except BadHttpMessage:
        raise MalformedRequest(
            {"form": ["Malformed multipart body: invalid part headers"]}
        ) from None
    except (ValueError, AssertionError) as err:
        raise MalformedRequest(
            {"form": [f"Malformed multipart body: {err or type(err).__name__}"]}
        ) from None


async def _read_parts(
    reader: MultipartReader,
    stream: StreamReader,
    spec: ArgSpec,
    data: MultiDict[Any],
    uploads: Uploads,
    options: BodyOptions,
) -> None:
    total = 0
    max_size = options.max_size
    while (part := await _patiently(reader.next(), stream, options)) is not None:
        _check_fields(len(data) + 1, options.max_fields)
        if not isinstance(part, BodyPartReader):
            raise ArgumentError({"form": ["Nested multipart bodies are not supported"]})
        name = part.name or ""
        if part.filename is not None or name in spec.files:
            path, total = await _save_part(part, stream, name, uploads, total, options)
            upload = UploadedFile(
                name=name,
                filename=path,
                content_type=_valid_text(part.headers.get("Content-Type")),
                original_filename=_valid_text(part.filename),
            )
            data.add(name, upload)
            continue
        raw = bytearray()
        while chunk := await _patiently(part.read_chunk(_CHUNK), stream, options):
            raw.extend(chunk)
            _check_size(total + len(raw), max_size)
            if len(raw) > _MAX_TEXT_FIELD:
                raise ArgumentError(
                    {name: [f"Field value larger than {_MAX_TEXT_FIELD} bytes"]}
                )
        total += len(raw)
        try:
            data.add(
                name, bytes(part.decode(bytes(raw))).decode(part.get_charset("utf-8"))
            )
        except (UnicodeDecodeError, LookupError):
            raise ArgumentError({name: ["Field value is not valid text"]}) from None


async def _save_part(
    part: BodyPartReader,
    stream: StreamReader,
    name: str,
    uploads: Uploads,
    total: int,
    options: BodyOptions,
) -> tuple[str, int]:
    fd, path = uploads.create()
    size = 0
    with open(fd, "wb") as handle:
        while chunk := await _patiently(part.read_chunk(_CHUNK), stream, options):
            size += len(chunk)
            if options.max_file_size and size > options.max_file_size:
                raise RequestTooLarge(
                    f"File '{name}' exceeds the limit of {options.max_file_size} "
                    "bytes per file",
                    field=name,
                )
            _check_size(total + size, options.max_size)
            if uploads.size < _INLINE_FILE_BYTES:
                handle.write(chunk)
            else:
                await asyncio.to_thread(handle.write, chunk)
            uploads.size += len(chunk)
    return path, total + size


def _check_fields(count: int, max_fields: int) -> None:
    if max_fields and count > max_fields:
        raise _too_many_fields(max_fields)


def _too_many_fields(max_fields: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request has more than {max_fields} query parameters and form fields"
    )


def _valid_text(value: str | None) -> str | None:
    """``value`` with bytes that were not UTF-8 replaced by U+FFFD.

    aiohttp keeps undecodable header bytes as lone surrogates, which raise
    ``UnicodeEncodeError`` wherever a model prints, logs or stores the name;
    any other lone surrogate (an RFC 5987 name in an odd codec) becomes "?".
    """
    if value is None:
        return None
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")


def _check_size(total: int, max_size: int) -> None:
    if max_size and total > max_size:
        raise RequestTooLarge(f"Request body exceeds the limit of {max_size} bytes")


def _messages(messages: Any) -> dict[str, Any]:
    if isinstance(messages, dict):
        return {str(k): v for k, v in messages.items()}
    return {"_schema": messages}
