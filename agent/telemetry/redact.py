"""Keeps secret values out of everything the agent says: logs, `/health`, spans and errors."""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
MIN_SECRET_CHARS = 4
"""Shorter secrets are masked only where they stand quoted, not wherever the letters occur."""

# Credentials that may sit inside text we did not write ourselves (driver errors, URLs).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)
_KV_PASSWORD = re.compile(
    r"(?P<key>\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)", re.I | re.S
)
_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")
# libpq key=value pairs: a value is a single-quoted string or a word, both with `\` escapes.
_KV_PAIR = re.compile(
    r"(?P<key>[A-Za-z_]+)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|(?:[^\s'\\]|\\.)(?:[^\s\\]|\\.)*)",
    re.S,
)
_KV_ESCAPE = re.compile(r"\\(.)", re.S)
_SECRET_KEYS = frozenset({"password", "sslpassword"})
# `Authorization` style values: a scheme word, then the credential.
_SCHEME_TOKEN = re.compile(r"^(?P<scheme>[A-Za-z][\w-]*)\s+(?P<token>\S+)$")
_AUTH_SCHEMES = frozenset({"basic", "bearer", "token", "apikey", "api-key"})


def embedded_secrets(value: str) -> set[str]:
    """The credentials inside a secret, in every spelling a server or library may quote back.

    A whole DSN or URL is one secret, but an error message quotes only its password: the
    password of a `scheme://user:password@host` URL (as written and percent-decoded, read the
    way libpq splits it at the first `@` and the way urllib does at the last), `password` and
    `sslpassword` in its query string or in a libpq `key=value` string (quoted, unquoted and
    unescaped), and the credential after the scheme word of an `Authorization` value (for
    `Basic`, also the decoded `user:password` and the password).
    """
    found: set[str] = set()
    if _SCHEME.match(value):
        found |= _url_secrets(value)
    elif "=" in value:
        found |= _keyword_secrets(value)
    match = _SCHEME_TOKEN.match(value.strip())
    if match is not None and match["scheme"].lower() in _AUTH_SCHEMES:
        found.add(match["token"])
        if match["scheme"].lower() == "basic":
            found |= _basic_secrets(match["token"])
    spellings = set()
    for secret in found:
        spellings |= {secret, unquote(secret), quote(secret, safe=""), quote(secret)}
    return {s for s in spellings if s}


def _url_secrets(url: str) -> set[str]:
    """Passwords in the userinfo and the query string of `url`, as written."""
    rest = url.partition("://")[2]
    userinfos = set()
    # Three readings of where the userinfo ends, as a password holding an unencoded `@` or `/`
    # is quoted back in pieces: libpq's (the first `@`, unless a `/` comes first), urllib's
    # (the last `@` of the authority) and the writer's (the last `@` before the query).
    libpq = re.match(r"[^@/]*@", rest)
    if libpq is not None:
        userinfos.add(libpq[0][:-1])
    netloc = re.match(r"[^/?#]*", rest)
    if netloc is not None and "@" in netloc[0]:
        userinfos.add(netloc[0].rpartition("@")[0])
    before_query = rest.partition("?")[0]
    if "@" in before_query:
        userinfos.add(before_query.rpartition("@")[0])
    found = {u.partition(":")[2] for u in userinfos if ":" in u}
    query = rest.partition("?")[2].partition("#")[0]
    for pair in query.split("&"):
        key, eq, secret = pair.partition("=")
        if eq and unquote(key).lower() in _SECRET_KEYS:
            found.add(secret)
    return found


def _keyword_secrets(conninfo: str) -> set[str]:
    """`password` and `sslpassword` values of a libpq `key=value` string, quoted and not."""
    found: set[str] = set()
    for match in _KV_PAIR.finditer(conninfo):
        if match["key"].lower() not in _SECRET_KEYS:
            continue
        raw = inner = match["value"]
        if raw.startswith("'"):
            inner = raw[1:-1] if len(raw) > 1 and raw.endswith("'") else raw[1:]
        # The quotes are libpq's syntax, not the secret's: a message quoting it keeps them.
        found |= {inner, _KV_ESCAPE.sub(r"\1", inner)}
    return found


def _basic_secrets(token: str) -> set[str]:
    """The `user:password` pair of a Basic credential, and its password."""
    try:
        pair = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return set()
    return {pair, pair.partition(":")[2]} if ":" in pair else {pair}


class Redactor:
    """Replaces every registered secret, and password-shaped substrings, with `***`."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._short: re.Pattern[str] | None = None
        self._short_values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def register(self, secret: str | None) -> None:
        """Remember `secret`, and every credential embedded in it, so they are masked later.

        A DSN or URL is registered whole and by its password (see `embedded_secrets`), so a
        server that quotes only the password it received is masked too. Secrets shorter than
        `MIN_SECRET_CHARS` would mask innocent text everywhere: they are masked only where they
        stand between quotes, as servers quote what they were sent.
        """
        if not secret:
            return
        self._add({secret} | embedded_secrets(secret))

    def register_credentials(self, text: str | None) -> None:
        """Remember the credentials embedded in `text` (a URL's password), but not `text` itself.

        For values that are not secret as a whole, such as an endpoint URL that is shown in logs
        but may carry `user:password@`.
        """
        if text:
            self._add(embedded_secrets(text))

    def _add(self, values: Iterable[str]) -> None:
        with self._lock:
            long = set(self._secrets)
            short = set(self._short_values)
            for value in values:
                (long if len(value) >= MIN_SECRET_CHARS else short).add(value)
            # Longest first: a secret that contains another is masked as one piece.
            self._secrets = tuple(sorted(long, key=lambda s: (-len(s), s)))
            if short != self._short_values:
                self._short_values = frozenset(short)
                words = "|".join(re.escape(s) for s in sorted(short, key=len, reverse=True))
                self._short = re.compile(rf"(['\"`])(?:{words})\1")

    def text(self, value: str) -> str:
        """`value` with secrets masked."""
        if not value:
            return value
        value = _mask(value, self._secrets)
        short = self._short
        if short is not None:
            value = short.sub(rf"\g<1>{MASK}\g<1>", value)
        if "@" in value:
            value = _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{MASK}@", value)
        if "password" in value.lower():
            value = _KV_PASSWORD.sub(rf"\g<key>{MASK}", value)
        return value

    def value(self, value: Any) -> Any:
        """`value` with secrets masked in every string it holds, recursively."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def _mask(value: str, secrets: tuple[str, ...]) -> str:
    """`value` with every occurrence of every secret masked, overlapping ones as one piece.

    Replacing secrets one after another would leave the tail of a secret that overlaps one
    already replaced; masking the union of their spans leaves nothing of either.
    """
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        start = value.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = value.find(secret, start + 1)
    if not spans:
        return value
    spans.sort()
    out: list[str] = []
    done = 0
    end = -1
    for start, stop in spans:
        if start > end:
            if end >= 0:
                out.append(MASK)
            out.append(value[done:start])
        end = max(end, stop)
        done = end
    out.append(MASK)
    out.append(value[done:])
    return "".join(out)


redactor = Redactor()
"""The process-wide redactor: config loading registers secrets, every output path applies it."""
