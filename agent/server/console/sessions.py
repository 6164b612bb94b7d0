"""The operator console's login sessions: an operator proves the admin token once, and gets a
session held in the agent's memory, named by a random id in an HttpOnly, SameSite=Strict cookie,
with a CSRF token of its own that the page sends back with every change.

The token itself is never kept: not in the session, the cookie, a URL or the browser. Sessions
end on logout, after `idle_seconds` without a request, after `max_seconds` in all, and when the
agent restarts. A session id or CSRF token is compared in constant time.
"""

from __future__ import annotations

import dataclasses
import hmac
import re
import secrets
import time
from collections.abc import Callable

OPERATOR = re.compile(r"[A-Za-z0-9._@:+-]{1,100}")
"""What an operator's name may hold: it becomes the actor of every change in the audit trail."""

MAX_SESSIONS = 256
"""Sessions kept at most; logging in beyond it ends the oldest."""


@dataclasses.dataclass(slots=True)
class Session:
    """One logged-in operator."""

    id: str
    operator: str
    csrf: str
    created: float
    seen: float


class Sessions:
    """Sessions by id, with their lifetimes on an injected clock."""

    def __init__(
        self,
        idle_seconds: float = 1800.0,
        max_seconds: float = 12 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self._clock = clock
        self._by_id: dict[str, Session] = {}

    def open(self, operator: str) -> Session:
        """A new session for `operator` (validated by the caller against OPERATOR)."""
        self._expire()
        while len(self._by_id) >= MAX_SESSIONS:
            oldest = min(self._by_id.values(), key=lambda s: s.created)
            del self._by_id[oldest.id]
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), operator, secrets.token_urlsafe(32), now, now)
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session named `session_id` (its idle time restarts), or None."""
        if not session_id:
            return None
        now = self._clock()
        found = None
        for candidate in self._by_id.values():
            # Every id is compared, in constant time each: the lookup tells nothing of how close
            # a guess came.
            if hmac.compare_digest(candidate.id.encode(), session_id.encode("utf-8", "replace")):
                found = candidate
        if found is None:
            return None
        if self._ended(found, now):
            del self._by_id[found.id]
            return None
        found.seen = now
        return found

    def close(self, session_id: str | None) -> None:
        """End a session (logout); nothing when there is none."""
        session = self.get(session_id)
        if session is not None:
            del self._by_id[session.id]

    def __len__(self) -> int:
        self._expire()
        return len(self._by_id)

    def _ended(self, session: Session, now: float) -> bool:
        return now - session.seen > self.idle_seconds or now - session.created > self.max_seconds

    def _expire(self) -> None:
        now = self._clock()
        for ended in [s for s in self._by_id.values() if self._ended(s, now)]:
            del self._by_id[ended.id]


def csrf_matches(session: Session, sent: str | None) -> bool:
    """Whether the CSRF token `sent` with a request is the session's."""
    if not sent:
        return False
    return hmac.compare_digest(session.csrf.encode(), sent.encode("utf-8", "replace"))
