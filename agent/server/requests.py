"""The admin API's request bodies and query parameters: validated by `degradation_api.py`,
described by `openapi.py`."""

from __future__ import annotations

import datetime as dt
import re

from multidict import MultiMapping
from pydantic import BaseModel, ConfigDict, Field

from agent.config.model import LevelName
from agent.degradation.audit import MAX_LIMIT, AuditQuery, time_text


class PinRequest(BaseModel):
    """Body of `POST /api/v1/degradation/pin`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    level: LevelName
    reason: str = Field(min_length=1, max_length=500)
    ttl_seconds: float | None = Field(default=3600.0, gt=0, le=30 * 86_400)
    actor: str = Field(default="api", min_length=1, max_length=100)


class UnpinRequest(BaseModel):
    """Body of `POST /api/v1/degradation/unpin`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(default="", max_length=500)
    actor: str = Field(default="api", min_length=1, max_length=100)


class EvaluateRequest(BaseModel):
    """Body of `POST /api/v1/flags/{key}/evaluate`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    context: dict[str, str] = Field(default_factory=dict, max_length=64)


AUDIT_PARAMETERS = ("limit", "since", "until", "actor", "kind", "cursor")
_LIMIT = re.compile(r"[0-9]{1,5}")
_KIND = re.compile(r"[a-z_]{1,64}")


def audit_query(params: MultiMapping[str]) -> AuditQuery:
    """The query of `GET /api/v1/audit`; ValueError saying which parameter is wrong and why.

    `limit` 1-10,000 (default 100); `since` (inclusive) and `until` (exclusive) RFC 3339 times
    with an offset; `actor` an actor id or kind, or `kind:id`; `kind` an entry's `action`,
    repeatable; `cursor` the `next_cursor` of the page before.
    """
    known_parameters(params, AUDIT_PARAMETERS, repeatable=("kind",))
    limit = query_limit(params)
    kinds = tuple(dict.fromkeys(params.getall("kind", [])))
    bad = [k for k in kinds if not _KIND.fullmatch(k)]
    if bad or len(kinds) > 32:
        raise ValueError("kind must be an audit action such as level_changed (at most 32)")
    actor = params.get("actor")
    if actor is not None and not (1 <= len(actor) <= 201 and actor.isprintable()):
        raise ValueError("actor must be 1 to 201 printable characters")
    cursor = params.get("cursor")
    if cursor is not None and not (1 <= len(cursor) <= 64 and cursor.isascii()):
        raise ValueError("cursor must be the next_cursor of an earlier page")
    return AuditQuery(
        limit=limit,
        since=_time(params, "since"),
        until=_time(params, "until"),
        actor=actor,
        kinds=kinds,
        cursor=cursor,
    )


def known_parameters(
    params: MultiMapping[str], known: tuple[str, ...], repeatable: tuple[str, ...] = ()
) -> None:
    """ValueError naming the first query parameter not in `known`, or one given more than once
    (unless `repeatable`). Shared by the audit and backups queries."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}; known: {', '.join(known) or 'none'}")
    for name in known:
        if name not in repeatable and len(params.getall(name, [])) > 1:
            raise ValueError(f"{name} given more than once")


def query_limit(params: MultiMapping[str]) -> int:
    """`limit`: 1 to MAX_LIMIT, 100 when absent; ValueError saying so otherwise."""
    raw = params.get("limit", "100")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def query_time(params: MultiMapping[str], name: str) -> dt.datetime | None:
    """Query parameter `name` as an RFC 3339 time with an offset (None when absent); ValueError
    saying so otherwise. Shared by the audit and backups queries."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            raise ValueError
        # A time with no UTC or Unix equivalent (year 1 at +01:00, 9999-12-31 at -05:00).
        moment.astimezone(dt.UTC)
        moment.timestamp()
    except (ValueError, OverflowError):
        msg = f"{name} must be an RFC 3339 time with an offset, e.g. 2026-12-06T23:30:00Z"
        raise ValueError(msg) from None
    return moment


def _time(params: MultiMapping[str], name: str) -> str | None:
    moment = query_time(params, name)
    return None if moment is None else time_text(moment)
