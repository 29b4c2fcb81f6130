"""Static bearer tokens, from a file or the ``DEEPAAS_TOKENS`` environment variable.

One entry per line (``;`` also separates entries, for an environment variable)::

    # token                         scopes
    s3cr3t-for-the-portal           predict
    sha256:9f86d081884c7d659a2f...  predict,train
    another-one                     admin

A token is given as it is sent, or as ``sha256:`` and the hex digest of it, so that
the file need not hold the tokens themselves. Only digests are kept in memory, and
a presented token is hashed and compared with every entry in constant time, so
neither the answer time nor the memory tells which entry matched or how much of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections.abc import Iterable

from deepaas.api.security.access import Scope, parse_scopes
from deepaas.exceptions import ConfigurationError

__all__ = ["StaticTokens", "digest"]

# RFC 6750's b64token: what a Bearer credential may contain.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_HASHED = re.compile(r"sha256:([0-9a-fA-F]{64})")


def digest(token: str) -> bytes:
    """The SHA-256 digest of a token, as kept and compared."""
    return hashlib.sha256(token.encode()).digest()


@dataclasses.dataclass(frozen=True)
class _Entry:
    digest: bytes = dataclasses.field(repr=False)
    scopes: frozenset[Scope]


class StaticTokens:
    """Known tokens (as digests) and the scopes of each.

    Args:
        entries: ``(digest, scopes)`` pairs.
    """

    def __init__(self, entries: Iterable[tuple[bytes, frozenset[Scope]]]) -> None:
        self._entries = tuple(_Entry(d, s) for d, s in entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<StaticTokens: {len(self._entries)}>"

    @classmethod
    def parse(cls, text: str, *, source: str) -> StaticTokens:
        """Read entries in the documented format.

        Args:
            text: The file's or variable's content.
            source: Where it comes from, for error messages (never the token).

        Raises:
            ConfigurationError: An entry is malformed; the message names its line.
        """
        entries: dict[bytes, frozenset[Scope]] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            for item in line.split(";"):
                item = item.strip()
                if not item or item.startswith("#"):
                    continue
                where = f"{source}, line {number}"
                token_digest, scopes = _parse_entry(item, where)
                if token_digest in entries:
                    raise ConfigurationError(f"{where}: this token is listed twice")
                entries[token_digest] = scopes
        return cls(entries.items())

    @classmethod
    def load(cls, path: str | None, text: str, *, env_name: str) -> StaticTokens:
        """Read the token file at ``path`` (if any) and the entries in ``text``.

        Raises:
            ConfigurationError: The file cannot be read, an entry is malformed,
                or a token file was given that lists no token.
        """
        tokens = cls.parse(text, source=env_name) if text.strip() else cls(())
        if path is None:
            return tokens
        try:
            with open(path, encoding="utf-8") as file:
                content = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read the token file {path}: {exc}"
            ) from exc
        from_file = cls.parse(content, source=path)
        if not from_file:
            raise ConfigurationError(f"the token file {path} lists no token")
        return cls([*tokens.items(), *from_file.items()])

    def items(self) -> list[tuple[bytes, frozenset[Scope]]]:
        """The ``(digest, scopes)`` pairs."""
        return [(e.digest, e.scopes) for e in self._entries]

    def lookup(self, token: str) -> frozenset[Scope] | None:
        """The scopes of ``token``, or ``None`` when it is not known.

        Every entry is compared, whichever matches, with :func:`hmac.compare_digest`.
        """
        presented = digest(token)
        found: frozenset[Scope] | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, presented):
                found = entry.scopes
        return found


def _parse_entry(item: str, where: str) -> tuple[bytes, frozenset[Scope]]:
    fields = item.split(None, 1)
    if len(fields) < 2:
        raise ConfigurationError(
            f"{where}: expected a token and its scopes, e.g. 'TOKEN predict,train'"
        )
    token, scope_list = fields
    try:
        scopes = parse_scopes(scope_list.replace(" ", ","), where=where)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if not scopes:
        raise ConfigurationError(f"{where}: no scope given")
    hashed = _HASHED.fullmatch(token)
    if hashed:
        return bytes.fromhex(hashed.group(1)), scopes
    if token.lower().startswith("sha256:"):
        raise ConfigurationError(
            f"{where}: 'sha256:' must be followed by 64 hexadecimal digits"
        )
    if not _TOKEN.fullmatch(token):
        raise ConfigurationError(
            f"{where}: a token may hold letters, digits and '-._~+/' (then '=')"
        )
    return digest(token), scopes
