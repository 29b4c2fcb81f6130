"""Property-based tests of argument parsing and media-type negotiation."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError, fields, validate
from multidict import MultiDict

from deepaas.api.args import ArgSpec
from deepaas.api.media import negotiate
from deepaas.exceptions import ArgumentError

token = st.text(string.ascii_lowercase, min_size=1, max_size=8)
media_type = st.builds(lambda a, b: f"{a}/{b}", token, token)
choices = st.lists(media_type, min_size=1, max_size=5, unique=True)


@given(choices)
def test_absent_accept_is_the_first_choice(offered):
    assert negotiate(offered, None) == offered[0]
    assert negotiate(offered, "  ") == offered[0]


@given(choices, st.data())
def test_an_offered_type_is_always_honoured(offered, data):
    wanted = data.draw(st.sampled_from(offered))
    assert negotiate(offered, wanted) == wanted


@given(choices, st.lists(st.tuples(media_type, st.floats(0.01, 1.0)), max_size=6))
def test_negotiation_returns_an_offered_type_or_422(offered, ranges):
    header = ", ".join(f"{m};q={q:.2f}" for m, q in ranges)
    try:
        chosen = negotiate(offered, header)
    except ArgumentError as err:
        assert "accept" in err.messages
    else:
        assert chosen in offered


@given(choices)
def test_wildcard_prefers_json(offered):
    expected = "application/json" if "application/json" in offered else offered[0]
    assert negotiate(offered, "*/*") == expected
    assert negotiate([*offered, "application/json"], "*/*") == ("application/json")


@given(st.text(max_size=40))
def test_garbage_accept_header_never_crashes(header):
    try:
        assert negotiate(["application/json", "text/plain"], header) in (
            "application/json",
            "text/plain",
        )
    except ArgumentError as err:
        assert "accept" in err.messages


SPEC = ArgSpec(
    {
        "n": fields.Int(load_default=0, validate=validate.Range(min=-1000, max=1000)),
        "flag": fields.Bool(load_default=False),
        "tags": fields.List(fields.Str(), load_default=list),
        "mode": fields.Str(load_default="a", validate=validate.OneOf(["a", "b"])),
    }
)


@given(
    st.integers(-1000, 1000),
    st.booleans(),
    st.lists(st.text(min_size=1, max_size=5), max_size=4),
)
def test_valid_query_values_round_trip(n, flag, tags):
    data = MultiDict([("n", str(n)), ("flag", str(flag))] + [("tags", t) for t in tags])
    values = SPEC.validate(data)
    assert values["n"] == n
    assert values["flag"] is flag
    assert values["tags"] == tags


@given(
    st.dictionaries(
        st.sampled_from(["n", "flag", "mode", "other"]), st.text(max_size=10)
    )
)
def test_any_input_validates_or_names_the_bad_fields(raw):
    try:
        values = SPEC.validate(MultiDict(raw))
    except ArgumentError as err:
        assert set(err.messages) <= {"n", "flag", "mode"}
        assert err.messages
    else:
        assert set(values) == {"n", "flag", "tags", "mode"}


@pytest.mark.parametrize("raw", ["1001", "-1001", "1e3", "0x10", ""])
def test_out_of_range_or_malformed_numbers_are_rejected(raw):
    with pytest.raises(ArgumentError) as info:
        SPEC.validate(MultiDict({"n": raw}))
    assert list(info.value.messages) == ["n"]


# Fields of every kind the direct loading path handles, with defaults,
# requirements and validators: its answers must be those of Schema.load.
DIRECT_FIELDS = {
    "n": fields.Int(required=True, validate=validate.Range(min=0, max=9)),
    "x": fields.Float(load_default=1.5),
    "flag": fields.Bool(),
    "name": fields.Str(load_default=lambda: "computed"),
    "mode": fields.Str(validate=validate.OneOf(["a", "b"])),
    "maybe": fields.Int(allow_none=True, load_default=None),
    "tags": fields.List(fields.Int(), load_default=list),
    "when": fields.Date(),
}
DIRECT = ArgSpec(DIRECT_FIELDS)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-20, 20),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.sampled_from(["a", "b", "3", "1.5", "true", "2024-02-30", "2024-02-29"]),
)


def test_plain_schemas_take_the_direct_path():
    assert DIRECT._direct is not None


@given(
    st.dictionaries(
        st.sampled_from(sorted(DIRECT_FIELDS)),
        st.one_of(scalar, st.lists(scalar, max_size=3)),
    )
)
def test_the_direct_path_answers_as_schema_load(values):
    try:
        expected = DIRECT.schema.load(values)
    except ValidationError as err:
        expected_error = err.messages
    else:
        expected_error = None
    errors: dict = {}
    loaded = DIRECT._load(dict(values), errors)
    if expected_error is None:
        assert not errors
        assert loaded == expected
    else:
        assert errors == expected_error
        assert loaded == {}


def test_renamed_fields_keep_schema_load():
    spec = ArgSpec({"a": fields.Str(data_key="b")})
    assert spec._direct is None
