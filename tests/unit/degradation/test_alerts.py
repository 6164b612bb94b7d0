"""Alert state per fingerprint and episode, including convergence under reordering."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.degradation.alerts import AlertBook, Change, WebhookAlert, WebhookPayload
from agent.degradation.levels import Level
from agent.degradation.policy import Hysteresis, Matcher, Rule, demand
from agent.degradation.state import Policy, State, advance

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def msg(fp: str, status: str, episode: int, name: str = "CacheDown") -> WebhookAlert:
    """An alert message for episode `episode` (its startsAt) of fingerprint `fp`."""
    return WebhookAlert(
        status=status,
        labels={"alertname": name},
        fingerprint=fp,
        startsAt=T0 + dt.timedelta(minutes=episode),
    )


def changes(book: AlertBook, *alerts: WebhookAlert) -> tuple[AlertBook, list[Change]]:
    new, applied = book.apply(alerts, now=1.0)
    return new, [c for _, c in applied]


def test_fire_then_duplicate_then_resolve() -> None:
    """Firing adds, a duplicate is a no-op, the resolve of that episode clears it."""
    book, c1 = changes(AlertBook(), msg("a", "firing", 1))
    book, c2 = changes(book, msg("a", "firing", 1))
    book, c3 = changes(book, msg("a", "resolved", 1))

    assert (c1, c2, c3) == ([Change.FIRED], [Change.DUPLICATE], [Change.RESOLVED])
    assert not book.active


def test_stale_resolve_never_clears_newer_episode() -> None:
    """A resolve for an older episode leaves the newer firing episode active."""
    book, _ = changes(AlertBook(), msg("a", "firing", 2))
    book, got = changes(book, msg("a", "resolved", 1))

    assert got == [Change.STALE]
    assert "a" in book.active


def test_late_firing_of_resolved_episode_stays_buried() -> None:
    """A delayed duplicate firing of an episode already resolved does not resurrect it."""
    book, _ = changes(AlertBook(), msg("a", "resolved", 1))
    book, got = changes(book, msg("a", "firing", 1))

    assert got == [Change.STALE]
    assert not book.active


def test_unknown_resolve_is_a_noop_for_the_level() -> None:
    """A resolve for an alert never seen firing changes nothing active."""
    book, got = changes(AlertBook(), msg("zz", "resolved", 5))

    assert got == [Change.UNKNOWN_RESOLVE]
    assert not book.active


def test_new_episode_after_resolve_fires_again() -> None:
    """The same fingerprint with a newer startsAt is a new episode and fires."""
    book, _ = changes(AlertBook(), msg("a", "firing", 1), msg("a", "resolved", 1))
    book, got = changes(book, msg("a", "firing", 3))

    assert got == [Change.FIRED]
    assert book.active["a"].starts_at == (T0 + dt.timedelta(minutes=3)).timestamp()


def test_expiry_drops_alerts_not_seen_again() -> None:
    """Alerts whose last sighting is older than the cut-off are expired and tombstoned."""
    book, _ = AlertBook().apply([msg("a", "firing", 1)], now=10.0)
    book, _ = book.apply([msg("b", "firing", 1)], now=50.0)

    expired, dropped = book.expire(older_than=20.0, now=30.0)

    assert [a.fingerprint for a in dropped] == ["a"]
    assert set(expired.active) == {"b"}
    again, got = expired.apply([msg("a", "firing", 1)], now=60.0)
    assert [c for _, c in got] == [Change.STALE]
    assert "a" not in again.active


def test_tombstones_are_forgotten_after_their_retention() -> None:
    """A tombstone buries late duplicates until it is forgotten; then the book no longer has it."""
    book, _ = AlertBook().apply([msg("a", "resolved", 1)], now=100.0)
    book, _ = book.apply([msg("b", "firing", 1), msg("b", "resolved", 1)], now=200.0)

    kept = book.forget(before=150.0)
    assert set(kept.resolved) == {"b"}
    assert set(kept.buried_at) == {"b"}
    assert book.forget(before=100.0) is book  # nothing that old: the same book, nothing stored
    _, got = kept.apply([msg("b", "firing", 1)], now=210.0)
    assert [c for _, c in got] == [Change.STALE]  # still buried
    _, got = kept.apply([msg("a", "firing", 1)], now=210.0)
    assert [c for _, c in got] == [Change.FIRED]  # forgotten: a new episode as far as it knows


def test_a_tombstone_written_again_moves_to_the_end() -> None:
    """Forgetting goes oldest first, by when each tombstone was last written."""
    book, _ = AlertBook().apply([msg("a", "resolved", 1)], now=100.0)
    book, _ = book.apply([msg("b", "resolved", 1)], now=200.0)
    book, _ = book.apply([msg("a", "firing", 2), msg("a", "resolved", 2)], now=300.0)

    assert list(book.buried_at) == ["b", "a"]
    assert set(book.forget(before=250.0).resolved) == {"a"}


def test_tombstones_from_before_retention_count_from_the_state_time() -> None:
    """A book stored without tombstone times gets the state's time: nothing is dropped at once."""
    book, _ = AlertBook().apply([msg("a", "resolved", 1)], now=100.0)
    stored = book.to_json()
    del stored["buried_at"]

    loaded = AlertBook.from_json(stored, written_at=500.0)

    assert loaded.buried_at == {"a": 500.0}
    assert loaded.forget(before=400.0) is loaded


def test_round_trip_json() -> None:
    """A book survives to_json/from_json unchanged."""
    book, _ = changes(AlertBook(), msg("a", "firing", 1), msg("b", "resolved", 2))

    assert AlertBook.from_json(book.to_json()) == book


RULES = [
    Rule("cache", (Matcher.parse('alertname="CacheDown"'),), Level.DEGRADED),
    Rule("db", (Matcher.parse('alertname="DbDown"'),), Level.MINIMAL),
]


@st.composite
def histories(draw: st.DrawFn) -> list[WebhookAlert]:
    """An in-order history: per fingerprint, episodes that fire and (maybe) resolve."""
    messages: list[tuple[int, WebhookAlert]] = []
    for i in range(draw(st.integers(1, 4))):
        fp = f"fp{i}"
        name = draw(st.sampled_from(["CacheDown", "DbDown", "Unrelated"]))
        start = 0
        for _ in range(draw(st.integers(1, 3))):
            start += draw(st.integers(1, 5))
            messages.append((start * 10, msg(fp, "firing", start, name)))
            if draw(st.booleans()):
                messages.append(
                    (start * 10 + draw(st.integers(1, 9)), msg(fp, "resolved", start, name))
                )
    return [m for _, m in sorted(messages, key=lambda pair: pair[0])]


@settings(max_examples=300, deadline=None)
@given(history=histories(), data=st.data())
def test_any_reordering_and_duplication_converges(
    history: list[WebhookAlert], data: st.DataObject
) -> None:
    """Shuffled, duplicated, arbitrarily batched messages end at the in-order level and set."""
    in_order, _ = AlertBook().apply(history, now=0.0)
    noisy = history + data.draw(st.lists(st.sampled_from(history), max_size=len(history) * 2))
    shuffled = data.draw(st.permutations(noisy))
    book = AlertBook()
    while shuffled:
        size = data.draw(st.integers(1, len(shuffled)))
        book, _ = book.apply(shuffled[:size], now=0.0)
        shuffled = shuffled[size:]

    assert set(book.active) == set(in_order.active)
    assert (
        demand(book.active.values(), RULES, {}).level
        == demand(in_order.active.values(), RULES, {}).level
    )


def test_the_engine_forgets_old_tombstones_on_a_later_step() -> None:
    """A step past the retention drops the tombstone and is stored (a new version)."""
    policy = Policy((), {}, "severity", Hysteresis(), None, tombstone_seconds=3600.0)
    resolve = WebhookPayload(version="4", status="resolved", alerts=[msg("a", "resolved", 1)])

    step = advance(State(), policy, 1000.0, resolve)
    assert set(step.state.book.resolved) == {"a"}
    same = advance(step.state, policy, 1000.0 + 3599.0)
    assert same.state is step.state  # still remembered, nothing to store
    later = advance(step.state, policy, 1000.0 + 3601.0)

    assert later.state.book.resolved == {}
    assert later.state.version == step.state.version + 1
    assert later.audit == []  # housekeeping, not an event


def test_a_repeat_refreshes_last_seen() -> None:
    """A duplicate firing of the known episode moves its last sighting to now, nothing else."""
    book, _ = AlertBook().apply([msg("a", "firing", 1)], now=10.0)

    again, got = book.apply([msg("a", "firing", 1)], now=50.0)

    assert [c for _, c in got] == [Change.DUPLICATE]
    assert again.active["a"] == dataclasses.replace(book.active["a"], last_seen=50.0)


def test_a_repeated_resolve_is_a_duplicate() -> None:
    """The resolve of an episode already resolved is a duplicate and writes no new tombstone."""
    book, _ = AlertBook().apply([msg("a", "firing", 1), msg("a", "resolved", 1)], now=10.0)

    again, got = book.apply([msg("a", "resolved", 1)], now=50.0)

    assert [c for _, c in got] == [Change.DUPLICATE]
    assert again == book


def test_expiry_keeps_an_alert_seen_exactly_at_the_cut_off() -> None:
    """Only alerts last seen before `older_than` expire; one seen at it stays."""
    book, _ = AlertBook().apply([msg("a", "firing", 1)], now=20.0)
    both, _ = book.apply([msg("b", "firing", 1)], now=19.5)

    same, dropped = book.expire(older_than=20.0, now=100.0)
    one, dropped_b = both.expire(older_than=20.0, now=100.0)

    assert (same, dropped) == (book, [])
    assert set(one.active) == {"a"}
    assert [a.fingerprint for a in dropped_b] == ["b"]


def test_expiry_buries_the_episode_at_now() -> None:
    """An expired alert's episode is tombstoned with the expiry time, ready to be forgotten."""
    book, _ = AlertBook().apply([msg("a", "firing", 1), msg("b", "firing", 2)], now=10.0)
    book, _ = book.apply([msg("b", "firing", 2)], now=40.0)

    expired, _ = book.expire(older_than=20.0, now=30.0)

    assert expired == AlertBook(
        {"b": book.active["b"]},
        {"a": (T0 + dt.timedelta(minutes=1)).timestamp()},
        {"a": 30.0},
    )
    assert expired.forget(before=31.0).resolved == {}


def test_from_json_of_an_empty_document_is_an_empty_book() -> None:
    """Missing sections read as empty, and tombstones without times count from 0."""
    assert AlertBook.from_json({}) == AlertBook()
    assert AlertBook.from_json({"resolved": {"a": 5}}).buried_at == {"a": 0.0}


def test_from_json_orders_tombstones_oldest_first() -> None:
    """Tombstones are forgotten oldest first, whatever order the document lists them in."""
    loaded = AlertBook.from_json(
        {"resolved": {"a": 1.0, "b": 2.0, "c": 3.0}, "buried_at": {"a": 300.0, "c": 200.0}},
        written_at=100.0,
    )

    assert list(loaded.buried_at.items()) == [("b", 100.0), ("c", 200.0), ("a", 300.0)]
    assert set(loaded.forget(before=250.0).resolved) == {"a"}
