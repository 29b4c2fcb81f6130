"""Media types of predictions: choosing one, and writing the model's result in it."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from deepaas.exceptions import ArgumentError, InvalidModelResponse
from deepaas.model.results import to_json
from deepaas.model.v2.wrapper import JSON, ModelWrapper, ReturnedFile

__all__ = [
    "JSON_TYPE",
    "FileAnswer",
    "build_answer",
    "is_json",
    "negotiate",
]

JSON_TYPE = JSON

_CHUNK = 256 * 1024


def is_json(media_type: str) -> bool:
    """Whether ``media_type`` is answered with a JSON body."""
    return media_type in (JSON, "*/*") or media_type.endswith("+json")


def negotiate(choices: Sequence[str], requested: str | None) -> str:
    """Pick the media type to answer with among the model's ``choices``.

    ``requested`` is the ``accept`` argument or ``Accept`` header: one media type
    or a header list with quality values. Absent, the first choice is the default
    (as 2.x); ``*/*`` gives JSON when the model offers it, else the first choice.

    Raises:
        ArgumentError: Nothing requested is offered (422 naming ``accept``, as 2.x).
    """
    if not requested or not requested.strip():
        return choices[0]
    ranges = _parse_accept(requested)
    for wanted in ranges:
        if wanted == "*/*":
            return JSON if JSON in choices else choices[0]
        if wanted.endswith("/*"):
            major = wanted[:-1]
            for choice in choices:
                if choice.startswith(major):
                    return choice
        elif wanted in choices:
            return wanted
    raise ArgumentError({"accept": [f"Must be one of: {', '.join(choices)}."]})


def _parse_accept(header: str) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")):
        media, *params = (p.strip() for p in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            ranked.append((-quality, index, media.lower()))
    return [media for _, _, media in sorted(ranked)]


def _json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=to_json(body), status=status, content_type=JSON)


# What most models return: checked first, as the checks for files are dearer.
_PLAIN = frozenset({dict, list, str, int, float, bool, type(None)})


def build_answer(
    model: ModelWrapper, result: Any, media_type: str
) -> web.StreamResponse | FileAnswer:
    """The answer for ``result`` in ``media_type``, or a file still to be streamed.

    A :class:`FileAnswer` is sent with its :meth:`~FileAnswer.send`; anything
    else is the response itself (tell them apart by ``type()``: the check of an
    ABC such as ``StreamResponse`` costs more, on a path taken for every call).
    """
    if media_type == JSON or is_json(media_type):
        if type(result) not in _PLAIN and _is_file_like(result):
            raise InvalidModelResponse(
                f"Model '{model.name}' returned a file where JSON was expected"
            )
        if model.response_schema is not None:
            model.validate_response(result)
            return _json_response(result)
        return _json_response({"status": "OK", "predictions": result})
    if isinstance(result, (bytes, bytearray, memoryview)):
        return web.Response(body=bytes(result), content_type=media_type)
    if isinstance(result, ReturnedFile):
        if not result.filename:
            raise InvalidModelResponse(
                f"Model '{model.name}' returned a file without a path"
            )
        return FileAnswer(
            result.filename, result.content_type or media_type, None, result.name
        )
    if isinstance(result, os.PathLike) or (
        isinstance(result, str) and os.path.isfile(result)
    ):
        return FileAnswer(os.fspath(result), media_type, None, None)
    if isinstance(result, io.IOBase) or hasattr(result, "read"):
        return FileAnswer(None, media_type, result, None)
    if isinstance(result, str):
        return web.Response(text=result, content_type=media_type)
    return web.Response(text=to_json(result), content_type=media_type)


def _is_file_like(value: Any) -> bool:
    return isinstance(value, (io.IOBase, ReturnedFile, bytes, bytearray))


class FileAnswer:
    """A file answer, streamed in chunks read off the event loop."""

    def __init__(
        self, path: str | None, media_type: str, handle: Any, name: str | None
    ) -> None:
        self.path = path
        self.media_type = media_type
        self.handle = handle
        self.name = name

    async def send(self, request: web.Request) -> web.StreamResponse:
        """Stream the file to the client, then close any handle the model gave."""
        handle = self.handle
        try:
            if handle is None:
                assert self.path is not None
                try:
                    handle = await asyncio.to_thread(open, self.path, "rb")
                except OSError as err:
                    raise InvalidModelResponse(
                        f"The model's result file cannot be read: {err.strerror}"
                    ) from None
            response = web.StreamResponse()
            response.content_type = self.media_type
            name = self.name or self.path or getattr(handle, "name", None)
            if isinstance(name, str) and name:
                # As 2.x sent it, so clients can save the result under its name.
                filename = os.path.basename(name).replace('"', "")
                response.headers["Content-Disposition"] = (
                    f'attachment; filename="{filename}"'
                )
            await response.prepare(request)
            while chunk := await asyncio.to_thread(handle.read, _CHUNK):
                await response.write(
                    chunk if isinstance(chunk, bytes) else str(chunk).encode()
                )
            await response.write_eof()
            return response
        finally:
            if handle is not None:
                # Closed synchronously: this may run while the task is cancelled.
                handle.close()
