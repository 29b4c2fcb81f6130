"""Turn a request into the validated keyword arguments of a model method.

Arguments come from the query string and from the body (urlencoded form, multipart
form or a JSON object), merged in that order. Uploaded files are streamed to a
temporary directory owned by the request and handed over as ``UploadedFile``; the
caller removes the directory with :meth:`Arguments.cleanup`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, Any

import marshmallow
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from marshmallow import fields as mfields
from multidict import MultiDict, MultiDictProxy
from webargs.multidictproxy import MultiDictProxy as SchemaMultiDict

from deepaas.api._json_body import load_arguments
from deepaas.api.errors import RequestTooLarge
from deepaas.api.media import negotiate
from deepaas.exceptions import ArgumentError, MalformedRequest, UnsupportedMediaType
from deepaas.model import _fields
from deepaas.model.v2.wrapper import ACCEPT, ModelWrapper, UploadedFile

__all__ = ["ArgSpec", "Arguments", "ModelArgs", "parse"]

_CHUNK = 256 * 1024
# A text form field is an argument, not a payload: bound it.
_MAX_TEXT_FIELD = 8 * 1024 * 1024
_FORM = ("application/x-www-form-urlencoded", "multipart/form-data")


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

    def validate(
        self,
        data: MultiDict[Any],
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
        proxy = SchemaMultiDict(data, self.schema)
        values = {name: proxy[name] for name in self.schema.fields if name in data}
        for name, value in json_body.items():
            if name in self.schema.fields and name not in values:
                if name in self.lists and not isinstance(value, list):
                    value = [value]  # 2.x accepted a lone item for a list
                values[name] = value
        for name in self.files:
            if name in values and not isinstance(values[name], UploadedFile):
                del values[name]
                errors[name] = ["Expected an uploaded file (multipart/form-data)"]
        try:
            loaded: dict[str, Any] = self.schema.load(values)
        except marshmallow.ValidationError as err:
            errors.update(_messages(err.messages))
            loaded = {}
        if errors:
            order = list(self.fields)
            raise ArgumentError(
                dict(sorted(errors.items(), key=lambda kv: _position(order, kv[0])))
            )
        if accept is not None:
            loaded[ACCEPT] = accept
        return loaded


def _position(order: list[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


class ModelArgs:
    """The compiled arguments of one model's ``predict`` and ``train``."""

    def __init__(self, model: ModelWrapper) -> None:
        self.predict = ArgSpec(model.predict_fields, model.accept_choices)
        self.train = ArgSpec(model.train_fields)


class Arguments:
    """Validated arguments of one call, and the temporary files they refer to."""

    def __init__(
        self, values: dict[str, Any], files: dict[str, UploadedFile], tmpdir: str | None
    ) -> None:
        self.values = values
        self.files = files
        self._tmpdir = tmpdir

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
        return self._tmpdir is not None

    def cleanup(self) -> None:
        """Remove the uploaded files (idempotent, safe to call from any thread)."""
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    # Job records must survive a JSON store: anything exotic becomes its text.
    result: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return result


async def parse(
    request: web.Request,
    spec: ArgSpec,
    *,
    max_size: int = 0,
) -> Arguments:
    """Read, stream and validate the arguments declared by ``spec``.

    Args:
        request: The request to read.
        spec: The model method's declared arguments.
        max_size: Largest body in bytes (0: unlimited).

    Raises:
        ArgumentError: Validation failed (messages keyed by argument).
        UnsupportedMediaType: The body has a type that cannot hold arguments.
        RequestTooLarge: The body exceeds ``max_size``.
    """
    if max_size and request.content_length and request.content_length > max_size:
        raise RequestTooLarge(
            f"Request body of {request.content_length} bytes exceeds the limit of "
            f"{max_size} bytes"
        )
    data: MultiDict[Any] = MultiDict(request.query)
    json_body: dict[str, Any] = {}
    tmpdir: str | None = None
    try:
        ctype = request.content_type
        if request.body_exists:
            if ctype == "multipart/form-data":
                tmpdir = await asyncio.to_thread(tempfile.mkdtemp, prefix="deepaas-")
                await _read_multipart(request, spec, data, tmpdir, max_size)
            elif ctype == "application/x-www-form-urlencoded":
                data.extend(await _read_form(request))
            elif ctype == "application/json" or ctype.endswith("+json"):
                json_body = await _read_json(request)
            elif ctype != "application/octet-stream" or await request.read():
                raise UnsupportedMediaType(
                    f"Cannot read arguments from a '{ctype}' body; send a query "
                    "string, a form (urlencoded or multipart) or a JSON object"
                )
        values = spec.validate(data, request.headers.get("Accept"), json_body)
    except BaseException:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return Arguments(
        values, {k: v for k, v in values.items() if isinstance(v, UploadedFile)}, tmpdir
    )


async def _read_json(request: web.Request) -> dict[str, Any]:
    return load_arguments(await request.read(), request.charset)


async def _read_form(request: web.Request) -> MultiDictProxy[Any]:
    # aiohttp decodes the whole body with the declared charset before parsing
    # it: bytes that are not text, or a charset Python does not know, would
    # otherwise escape as a 500.
    try:
        return await request.post()
    except UnicodeDecodeError as err:
        raise MalformedRequest(
            {"form": [f"Invalid form body: {err.reason} at byte {err.start}"]}
        ) from None
    except LookupError:
        raise UnsupportedMediaType(
            f"Unknown charset '{request.charset}' in the request's Content-Type"
        ) from None


async def _read_multipart(
    request: web.Request,
    spec: ArgSpec,
    data: MultiDict[Any],
    tmpdir: str,
    max_size: int,
) -> None:
    # aiohttp signals a broken body (bad boundary, early EOF, bad part headers)
    # with these; none of our own code below raises them.
    try:
        await _read_parts(await request.multipart(), spec, data, tmpdir, max_size)
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
    spec: ArgSpec,
    data: MultiDict[Any],
    tmpdir: str,
    max_size: int,
) -> None:
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ArgumentError({"form": ["Nested multipart bodies are not supported"]})
        name = part.name or ""
        if part.filename is not None or name in spec.files:
            path = os.path.join(tmpdir, f"upload-{len(data) + 1}")
            total = await _save_part(part, path, total, max_size)
            upload = UploadedFile(
                name=name,
                filename=path,
                content_type=_valid_text(part.headers.get("Content-Type")),
                original_filename=_valid_text(part.filename),
            )
            data.add(name, upload)
            continue
        raw = bytearray()
        while chunk := await part.read_chunk(_CHUNK):
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


async def _save_part(part: BodyPartReader, path: str, total: int, max_size: int) -> int:
    handle: IO[bytes] = await asyncio.to_thread(open, path, "wb")
    try:
        while chunk := await part.read_chunk(_CHUNK):
            total += len(chunk)
            _check_size(total, max_size)
            await asyncio.to_thread(handle.write, chunk)
    finally:
        # Closed synchronously: this may run while the task is cancelled.
        handle.close()
    return total


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
