"""Audit queries: which entries a query selects, and how times are written so that text order is
time order."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.degradation import audit
from agent.degradation.audit import AuditQuery, time_text


def entry(time: str = "2026-12-06T23:30:00.000+00:00", **fields: Any) -> dict[str, Any]:
    """An audit entry by alice (a user) at `time`, action pin_set, with `fields` on top."""
    return {"time": time, "actor": {"kind": "user", "id": "alice"}, "action": "pin_set", **fields}


@pytest.mark.parametrize(
    ("query", "selected"),
    [
        (AuditQuery(), True),
        (AuditQuery(since="2026-12-06T23:30:00.000+00:00"), True),  # since is inclusive
        (AuditQuery(since="2026-12-06T23:30:00.001+00:00"), False),
        (AuditQuery(until="2026-12-06T23:30:00.000+00:00"), False),  # until is exclusive
        (AuditQuery(until="2026-12-06T23:30:00.001+00:00"), True),
        (AuditQuery(kinds=("pin_set",)), True),
        (AuditQuery(kinds=("level_changed", "pin_set")), True),
        (AuditQuery(kinds=("level_changed",)), False),
        (AuditQuery(actor="alice"), True),  # by id
        (AuditQuery(actor="user"), True),  # by kind
        (AuditQuery(actor="user:alice"), True),  # both
        (AuditQuery(actor="system:alice"), False),
        (AuditQuery(actor="user:bob"), False),
        (AuditQuery(actor="bob"), False),
        (AuditQuery(actor=":alice"), False),
        (
            AuditQuery(actor="alice", kinds=("pin_set",), since="2026-12-06T00:00:00.000+00:00"),
            True,
        ),
        (AuditQuery(actor="alice", kinds=("pin_cleared",)), False),
    ],
)
def test_a_query_selects_by_time_kind_and_actor(query: AuditQuery, selected: bool) -> None:
    """since inclusive, until exclusive, any of the kinds, the actor by id, kind or kind:id; all
    filters at once."""
    assert query.matches(entry()) is selected


def test_an_entry_without_an_actor_matches_only_unfiltered_actors() -> None:
    """An entry whose actor is missing or not an object is selected unless actors are filtered."""
    for odd in (entry(actor=None), entry(actor="alice"), {"time": "t", "action": "pin_set"}):
        assert AuditQuery().matches(odd)
        assert not AuditQuery(actor="alice").matches(odd)


def test_an_entry_without_a_time_is_before_any_time() -> None:
    """An entry that has no `time` counts as the earliest: a since filter leaves it out, an
    until filter keeps it."""
    timeless = {"action": "pin_set", "actor": {"kind": "user", "id": "alice"}}
    assert not AuditQuery(since="2026-12-06T00:00:00.000+00:00").matches(timeless)
    assert AuditQuery(until="2026-12-06T00:00:00.000+00:00").matches(timeless)


def test_actor_pair_splits_at_the_first_colon() -> None:
    """kind:id names both (an id may hold colons); a bare name names neither alone."""
    assert AuditQuery(actor="user:a:b").actor_pair() == ("user", "a:b")
    assert AuditQuery(actor="alice").actor_pair() is None
    assert AuditQuery().actor_pair() is None


def test_time_text_is_utc_to_the_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any offset is written as the same instant in UTC, milliseconds, `+00:00`: the form the
    engine writes entries in, so that comparing text compares times; the machine's own time
    zone plays no part."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    local = dt.datetime(2026, 12, 7, 1, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert time_text(local) == "2026-12-06T23:30:00.123+00:00"
    earlier, later = (
        time_text(dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)),
        time_text(dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC)),
    )
    assert earlier < later


def test_an_entry_holds_who_when_and_what() -> None:
    """An entry has a fresh hex id, the time, the version, the actor as an object and the body's
    fields; a note and a trace id only when given."""
    made = entry_of({"action": "pin_set", "pin": {"level": "minimal"}}, note="", trace_id=None)
    assert len(made["id"]) == 32
    int(made["id"], 16)
    assert {k: v for k, v in made.items() if k != "id"} == {
        "time": "2026-12-06T23:30:00.000+00:00",
        "version": 7,
        "actor": {"kind": "user", "id": "alice"},
        "action": "pin_set",
        "pin": {"level": "minimal"},
    }
    noted = entry_of({"action": "pin_cleared"}, note="done", trace_id="ab" * 16)
    assert (noted["note"], noted["trace_id"]) == ("done", "ab" * 16)
    assert entry_of({}, note="", trace_id=None)["id"] != made["id"]


def entry_of(body: dict[str, Any], note: str, trace_id: str | None) -> dict[str, Any]:
    """`audit.entry` by alice at version 7, 2026-12-06T23:30Z."""
    return audit.entry(
        body, 7, audit.Actor("user", "alice"), trace_id, "2026-12-06T23:30:00.000+00:00", note
    )


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000+00:00"),
        (1796601000.5, "2026-12-06T23:50:00.500+00:00"),
        (253402300800.0, "9999-12-31T23:59:59.999+00:00"),  # rounds past year 9999: clamped
        (1e13, "9999-12-31T23:59:59.999+00:00"),
        (-1e13, "0001-01-01T00:00:00.000+00:00"),
    ],
)
def test_a_unix_time_is_written_clamped_to_years_1_to_9999(timestamp: float, text: str) -> None:
    """time_now_text writes any clock reading, clamping what datetime cannot hold."""
    assert audit.time_now_text(timestamp) == text


@pytest.fixture(autouse=True)
def _restore_time_zone() -> Iterator[None]:
    """Whatever a test does to TZ, the next one runs in the machine's zone again."""
    yield
    time.tzset()
