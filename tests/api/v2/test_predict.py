import io
import json
import os
import tempfile

import aiohttp
import pytest
from PIL import Image

from deepaas.api.args import UPLOAD_PREFIX

PREDICT = "/v2/models/legacy/predict/"


async def test_defaults_from_declarations(client):
    resp = await client.post(PREDICT)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["status"] == "OK"
    assert body["predictions"] == {
        "message": "hello",
        "count": 1,
        "ratio": 0.5,
        "flag": False,
        "fail": False,
        "choice": "a",
        "accept": "application/json",
    }


@pytest.mark.parametrize(
    "send",
    [
        lambda c: c.post(PREDICT, params={"count": "3", "message": "hi"}),
        lambda c: c.post(PREDICT, data={"count": "3", "message": "hi"}),
        lambda c: c.post(PREDICT, json={"count": 3, "message": "hi"}),
    ],
    ids=["query", "urlencoded", "json"],
)
async def test_arguments_from_every_location(client, send):
    resp = await send(client)
    assert resp.status == 200
    predictions = (await resp.json())["predictions"]
    assert (predictions["count"], predictions["message"]) == (3, "hi")


async def test_arguments_from_multipart_form(client):
    form = aiohttp.FormData()
    form.add_field("count", "4")
    form.add_field(
        "image", b"\x89PNG" + b"x" * 5000, filename="pic.png", content_type="image/png"
    )
    resp = await client.post(PREDICT, data=form)
    assert resp.status == 200
    image = (await resp.json())["predictions"]["image"]
    assert image["name"] == "image"
    assert image["original_filename"] == "pic.png"
    assert image["content_type"] == "image/png"
    assert image["size"] == 5004
    # The upload is removed once the call is over.
    assert not os.path.exists(image["filename"])


async def test_list_argument_repeated_in_query(client):
    resp = await client.post(PREDICT + "?numbers=1&numbers=2&numbers=3")
    assert resp.status == 200
    assert (await resp.json())["predictions"]["numbers"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("True", True), ("False", False), ("true", True), ("1", True), ("0", False)],
)
async def test_booleans_as_2x_clients_send_them(client, raw, expected):
    resp = await client.post(PREDICT, params={"flag": raw})
    assert resp.status == 200
    assert (await resp.json())["predictions"]["flag"] is expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"count": "11"}, "count"),
        ({"count": "many"}, "count"),
        ({"choice": "z"}, "choice"),
        ({"flag": "perhaps"}, "flag"),
    ],
)
async def test_invalid_argument_is_422_naming_the_field(client, params, field):
    resp = await client.post(PREDICT, params=params)
    assert resp.status == 422
    body = await resp.json()
    assert field in body["message"]
    assert isinstance(body[field], list)
    assert body["errors"][field] == body[field]


async def test_file_argument_sent_as_text_is_422(client):
    resp = await client.post(PREDICT, data={"image": "not a file"})
    assert resp.status == 422
    assert "image" in (await resp.json())["errors"]


async def test_unknown_arguments_are_ignored(client):
    resp = await client.post(PREDICT, params={"nonsense": "1"})
    assert resp.status == 200
    assert "nonsense" not in (await resp.json())["predictions"]


async def test_json_body_must_be_an_object(client):
    resp = await client.post(
        PREDICT, data="[1, 2]", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 422
    assert "json" in (await resp.json())["errors"]


async def test_malformed_json_is_400_as_in_2x(client):
    resp = await client.post(
        PREDICT, data="{nope", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert "Invalid JSON body" in (await resp.json())["json"][0]


async def test_truncated_multipart_is_400(client):
    body = b'--XX\r\nContent-Disposition: form-data; name="count"\r\n\r\n3'
    resp = await client.post(
        PREDICT, data=body, headers={"Content-Type": "multipart/form-data; boundary=XX"}
    )
    assert resp.status == 400
    assert "message" in await resp.json()


async def test_unreadable_body_type_is_415(client):
    resp = await client.post(
        PREDICT, data=b"<x/>", headers={"Content-Type": "application/xml"}
    )
    assert resp.status == 415
    assert "application/xml" in (await resp.json())["message"]


# Media types --------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "params", "expected"),
    [
        ({"Accept": "*/*"}, {}, "application/json"),
        ({"Accept": "text/plain"}, {}, "text/plain"),
        ({"Accept": "image/png"}, {}, "image/png"),
        (
            {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"},
            {},
            "application/json",
        ),
        ({"Accept": "text/plain;q=0.5, image/png"}, {}, "image/png"),
        ({}, {"accept": "text/plain"}, "text/plain"),
        ({"Accept": "image/png"}, {"accept": "text/plain"}, "text/plain"),
    ],
)
async def test_media_type_negotiation(client, headers, params, expected):
    resp = await client.post(PREDICT, headers=headers, params=params)
    assert resp.status == 200
    assert resp.content_type == expected


async def test_unoffered_media_type_is_422_naming_accept(client):
    resp = await client.post(PREDICT, headers={"Accept": "application/xml"})
    assert resp.status == 422
    assert "accept" in (await resp.json())["errors"]


async def test_text_result_is_sent_as_text(client):
    resp = await client.post(PREDICT, headers={"Accept": "text/plain"})
    assert (await resp.text()).startswith("legacy says: ")


async def test_open_file_result_is_streamed_and_closed(client):
    resp = await client.post(PREDICT, headers={"Accept": "image/png"})
    assert resp.status == 200
    body = await resp.read()
    assert Image.open(io.BytesIO(body)).size == (1, 1)
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="')


# Failures -------------------------------------------------------------------


async def test_model_exception_is_500_without_traceback(client):
    resp = await client.post(PREDICT, params={"fail": "true"})
    assert resp.status == 500
    body = await resp.json()
    assert body["message"] == "Model 'legacy' predict() failed: ValueError: boom"
    assert "Traceback" not in json.dumps(body)


async def test_unknown_model_is_404(client):
    resp = await client.post("/v2/models/nope/predict/")
    assert resp.status == 404
    assert (await resp.json())["message"] == "Model 'nope' not found"


async def test_wrong_method_is_405(client):
    resp = await client.put(PREDICT)
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]
    assert "message" in await resp.json()


async def test_missing_slash_redirect_keeps_the_method(client):
    resp = await client.post(PREDICT.rstrip("/"), allow_redirects=False)
    assert resp.status == 308
    assert resp.headers["Location"] == PREDICT


async def test_doubled_slash_redirects(client):
    resp = await client.get("/v2//models/", allow_redirects=False)
    assert resp.status == 308
    assert resp.headers["Location"] == "/v2/models/"


# Response schemas -----------------------------------------------------------


async def test_schema_model_answers_its_own_shape(client):
    resp = await client.post("/v2/models/modern/predict/", params={"text": "hello"})
    assert resp.status == 200
    body = await resp.json()
    assert "status" not in body
    assert set(body) >= {"label", "probability"}


async def test_static_method_class_serves(client):
    resp = await client.post("/v2/models/static/predict/", params={"x": 2, "y": 5})
    assert resp.status == 200
    assert (await resp.json())["predictions"] == {"sum": 7}


async def test_no_temp_files_left_after_failed_validation(client):
    before = set(os.listdir(tempfile.gettempdir()))
    form = aiohttp.FormData()
    form.add_field("count", "99")
    form.add_field("image", b"data", filename="x.bin")
    resp = await client.post(PREDICT, data=form)
    assert resp.status == 422
    leftovers = {
        n
        for n in set(os.listdir(tempfile.gettempdir())) - before
        if n.startswith("deepaas-")
    }
    assert leftovers == set()


async def test_json_list_for_a_list_argument(client):
    resp = await client.post(PREDICT, json={"numbers": [9, 10]})
    assert resp.status == 200
    assert (await resp.json())["predictions"]["numbers"] == [9, 10]


async def test_json_lone_item_for_a_list_argument_as_2x(client):
    resp = await client.post(PREDICT, json={"numbers": 5})
    assert (await resp.json())["predictions"]["numbers"] == [5]


async def test_query_wins_over_json_body(client):
    resp = await client.post(PREDICT + "?count=2", json={"count": 7})
    assert (await resp.json())["predictions"]["count"] == 2


async def test_argument_named_message_keeps_its_2x_error_key(client):
    resp = await client.post(PREDICT, json={"message": ["not", "a", "string"]})
    assert resp.status == 422
    body = await resp.json()
    assert body["message"] == ["Not a valid string."]
    assert body["errors"]["message"] == ["Not a valid string."]


async def test_every_invalid_argument_is_reported_at_once(client):
    resp = await client.post(
        PREDICT,
        params={"count": "11", "choice": "z", "flag": "maybe"},
        headers={"Accept": "application/xml"},
    )
    assert resp.status == 422
    assert list((await resp.json())["errors"]) == ["count", "flag", "choice", "accept"]


async def test_control_character_in_part_name_is_400(client):
    body = b'--XX\r\nContent-Disposition: form-data; name="\x1f"\r\n\r\n3\r\n--XX--\r\n'
    resp = await client.post(
        PREDICT, data=body, headers={"Content-Type": "multipart/form-data; boundary=XX"}
    )
    assert resp.status == 400
    assert "form" in (await resp.json())["errors"]


@pytest.mark.parametrize("size", [10, 3 * 1024 * 1024])
async def test_uploads_small_and_large_arrive_whole_and_are_removed(client, size):
    # The first megabyte is written by the event loop, the rest in threads.
    before = set(os.listdir(tempfile.gettempdir()))
    form = aiohttp.FormData()
    form.add_field("image", io.BytesIO(os.urandom(size)), filename="x.bin")
    resp = await client.post(PREDICT, data=form)
    assert resp.status == 200
    image = (await resp.json())["predictions"]["image"]
    assert image["size"] == size
    assert os.path.basename(image["filename"]).startswith(UPLOAD_PREFIX)
    assert not os.path.exists(image["filename"])
    # A file, not a directory per request.
    assert os.path.dirname(image["filename"]) == tempfile.gettempdir()
    assert set(os.listdir(tempfile.gettempdir())) - before == set()
