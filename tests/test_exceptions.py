import inspect
import pickle

import pytest

from deepaas import exceptions
from deepaas.api.errors import RequestTimedOut, RequestTooLarge, status_for

ALL = [
    cls
    for _, cls in inspect.getmembers(exceptions, inspect.isclass)
    if issubclass(cls, exceptions.DeepaasError)
] + [RequestTooLarge, RequestTimedOut]

SAMPLES = {
    exceptions.ModelNotFound: ("m",),
    exceptions.ModelLoadError: ("m", "cause"),
    exceptions.ModelMethodNotImplemented: ("m", "predict"),
    exceptions.ArgumentError: ({"x": ["bad"]},),
    exceptions.MalformedRequest: ({"json": ["bad"]},),
    exceptions.JobNotFound: ("abc",),
}


def _make(cls):
    return cls(*SAMPLES.get(cls, ("message",)))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_maps_to_an_http_status(cls):
    status = status_for(_make(cls))
    assert 400 <= status < 600


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_survives_pickling(cls):
    error = _make(cls)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert copy.message == error.message


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (exceptions.ModelNotFound("m"), 404),
        (exceptions.JobNotFound("j"), 404),
        (exceptions.ModelMethodNotImplemented("m", "train"), 501),
        (exceptions.ArgumentError({"a": ["b"]}), 422),
        (exceptions.UnsupportedMediaType("x"), 415),
        (exceptions.MalformedRequest({"json": ["x"]}), 400),
        (RequestTooLarge("x"), 413),
        (RequestTooLarge("x", field="f"), 413),
        (RequestTimedOut("x"), 408),
        (exceptions.ModelCallError("x"), 500),
        (exceptions.WorkerCrashed("x"), 500),
        (exceptions.Overloaded("x"), 503),
        (exceptions.CallTimedOut("x"), 504),
    ],
)
def test_status_of_each_error(error, status):
    assert status_for(error) == status


def test_messages_name_what_is_wrong():
    assert exceptions.ModelLoadError("m", "No module named x").message == (
        "Model 'm' could not be loaded: No module named x"
    )
    assert (
        exceptions.ArgumentError({"b": [], "a": []}).message
        == "Invalid arguments: a, b"
    )
    assert exceptions.ModelNotFound("zz").name == "zz"


def test_request_too_large_keeps_its_field_across_pickling():
    error = pickle.loads(pickle.dumps(RequestTooLarge("too big", field="image")))
    assert (error.message, error.field) == ("too big", "image")
    assert RequestTooLarge("too big").field is None
