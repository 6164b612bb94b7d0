"""Audit queries: which entries (time range, actor, kind), how many, and where a page ends.

Pure: the stores turn a query into their own reads (SQL, a stream scan) and use `matches` to
filter what they cannot select by index.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

MAX_LIMIT = 10_000
"""The most entries one page returns."""


def time_text(moment: dt.datetime) -> str:
    """An audit entry's `time`: ISO 8601 in UTC to the millisecond, so that text order is time
    order (the stores compare times as text)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


@dataclasses.dataclass(frozen=True, slots=True)
class AuditQuery:
    """Entries newest first, `limit` of them, older than `cursor` (the last page's end).

    `since` is inclusive and `until` exclusive, both `time_text`. `actor` matches an entry's
    actor id or kind, or both as `kind:id`; `kinds` (empty: all) are the `action`s wanted.
    """

    limit: int = 100
    since: str | None = None
    until: str | None = None
    actor: str | None = None
    kinds: tuple[str, ...] = ()
    cursor: str | None = None

    def actor_pair(self) -> tuple[str, str] | None:
        """`actor` as (kind, id) when it names both as `kind:id`; None for a bare name."""
        if self.actor is None or ":" not in self.actor:
            return None
        kind, _, ident = self.actor.partition(":")
        return kind, ident

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """Whether `entry` is one this query selects (the cursor aside)."""
        time = str(entry.get("time", ""))
        if self.since is not None and time < self.since:
            return False
        if self.until is not None and time >= self.until:
            return False
        if self.kinds and entry.get("action") not in self.kinds:
            return False
        if self.actor is None:
            return True
        actor = entry.get("actor")
        if not isinstance(actor, dict):
            return False
        pair = self.actor_pair()
        if pair is not None:
            return (actor.get("kind"), actor.get("id")) == pair
        return self.actor in (actor.get("kind"), actor.get("id"))


@dataclasses.dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of entries, newest first; `next_cursor` continues it (None: no older entry)."""

    entries: list[dict[str, Any]]
    next_cursor: str | None
