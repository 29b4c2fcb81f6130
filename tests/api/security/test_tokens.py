"""Static tokens: the file format, digests and the constant-time lookup."""

import hashlib
import hmac

import pytest

from deepaas.api.security import tokens as tokens_module
from deepaas.api.security.access import Scope
from deepaas.api.security.tokens import StaticTokens
from deepaas.config import Config
from deepaas.exceptions import ConfigurationError


def _sha256(token):
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def test_entries_comments_blank_lines_and_semicolons():
    tokens = StaticTokens.parse(
        "# a comment\n\n  alpha predict\nbeta predict, train ; gamma admin\n",
        source="test",
    )
    assert len(tokens) == 3
    assert tokens.lookup("alpha") == {Scope.PREDICT}
    assert tokens.lookup("beta") == {Scope.PREDICT, Scope.TRAIN}
    assert tokens.lookup("gamma") == {Scope.ADMIN}
    assert tokens.lookup("delta") is None
    assert tokens.lookup("alph") is None
    assert tokens.lookup("") is None


def test_hashed_entries_accept_the_token_itself():
    tokens = StaticTokens.parse(f"{_sha256('s3cret')} train\n", source="test")
    assert tokens.lookup("s3cret") == {Scope.TRAIN}
    # The digest is what is stored, not a password to send.
    assert tokens.lookup(_sha256("s3cret")) is None


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("zq-secret", "expected a token and its scopes"),
        ("zq-secret predict,fly", "unknown scope 'fly'"),
        ("zq-secret ,", "no scope given"),
        ("zq:secret predict", "a token may hold"),
        ("sha256:zqsecret predict", "64 hexadecimal digits"),
    ],
)
def test_malformed_entries_name_the_line_but_not_the_token(line, fragment):
    with pytest.raises(ConfigurationError, match=fragment) as info:
        StaticTokens.parse(f"ok-token predict\n{line}\n", source="tokens.txt")
    assert "tokens.txt, line 2" in info.value.message
    assert "ok-token" not in info.value.message
    assert "secret" not in info.value.message


def test_a_token_listed_twice_is_refused():
    with pytest.raises(ConfigurationError, match="listed twice"):
        StaticTokens.parse(f"same predict\n{_sha256('same')} admin\n", source="t")


def test_file_and_environment_are_merged(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("from-file predict\n")
    tokens = StaticTokens.load(str(path), "from-env train", env_name="ENV")
    assert tokens.lookup("from-file") == {Scope.PREDICT}
    assert tokens.lookup("from-env") == {Scope.TRAIN}


def test_environment_alone(tmp_path):
    tokens = StaticTokens.load(None, "a predict;b admin", env_name="ENV")
    assert len(tokens) == 2


def test_missing_or_empty_file_is_an_error(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read the token file"):
        StaticTokens.load(str(tmp_path / "absent"), "", env_name="ENV")
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigurationError, match="lists no token"):
        StaticTokens.load(str(empty), "", env_name="ENV")


@pytest.mark.parametrize("token", ["first", "last", "none-of-them"])
def test_lookup_compares_every_entry_in_constant_time(monkeypatch, token):
    tokens = StaticTokens.parse("first predict\nmiddle train\nlast admin\n", source="t")
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", spy)
    tokens.lookup(token)
    # Every entry, whichever matched, and digests of equal length only.
    assert calls == [(32, 32)] * 3


def test_tokens_never_show_in_reprs():
    tokens = StaticTokens.parse("visible-secret predict\n", source="t")
    assert "visible-secret" not in repr(tokens)
    config = Config(auth_tokens="visible-secret predict")
    assert "visible-secret" not in repr(config)
