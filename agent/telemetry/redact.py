"""Keeps secret values out of everything the agent says: logs, `/health`, spans and errors."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"
# Credentials that may sit inside text we did not write ourselves (driver errors, URLs).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)('[^']*'|\S+)", re.I)


class Redactor:
    """Replaces every registered secret, and password-shaped substrings, with `***`."""

    def __init__(self) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def register(self, secret: str | None) -> None:
        """Remember `secret` so that it is masked wherever it appears later."""
        # Very short values would mask innocent text everywhere; they are weak secrets anyway.
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets = self._secrets | {secret}

    def text(self, value: str) -> str:
        """`value` with secrets masked."""
        if not value:
            return value
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
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


redactor = Redactor()
"""The process-wide redactor: config loading registers secrets, every output path applies it."""
