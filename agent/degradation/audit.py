"""Audit entries and the queries over them: what an entry holds, which entries a query selects
(time range, actor, kind), how many, and where a page ends.

Pure: the stores turn a query into their own reads (SQL, a stream scan) and use `matches` to
filter what they cannot select by index.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

MAX_LIMIT = 10_000
"""The most entries one page returns."""


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Actor:
    """Who asked for a change."""

    kind: str  # alertmanager | user | system
    id: str = ""


def entry(
    body: Mapping[str, Any],
    version: int,
    actor: Actor,
    trace_id: str | None,
    time: str,
    note: str,
) -> dict[str, Any]:
    """One audit entry: a new id, when, the version the change produced, who, then `body`
    (its `action` and the action's fields); `note` and `trace_id` only when there are any."""
    made = {
        "id": uuid.uuid4().hex,
        "time": time,
        "version": version,
        "actor": {"kind": actor.kind, "id": actor.id},
        **body,
    }
    if note:
        made["note"] = note
    if trace_id:
        made["trace_id"] = trace_id
    return made


def time_text(moment: dt.datetime) -> str:
    """An audit entry's `time`: ISO 8601 in UTC to the millisecond, so that text order is time
    order (the stores compare times as text)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def time_now_text(now: float) -> str:
    """`time_text` of a Unix time (clamped as `utc` clamps it)."""
    return time_text(utc(now))


def utc(timestamp: float) -> dt.datetime:
    """`timestamp` as a UTC datetime, clamped to the years 1-9999 that `datetime` holds.

    The float of a time near the end of year 9999 rounds past it (9999-12-31T23:59:59.999999Z
    is 253402300800.0), and a clamped time still orders at or after the held episode it resolves.
    """
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.UTC)
    except (OverflowError, ValueError, OSError):
        return _LATEST if timestamp > 0 else _EARLIEST


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
