"""`advance`, the pure step of the degradation engine: transitions, pins, Watchdog, expiry, audit.

Each scenario drives `advance` the way the engine does (webhook payloads, pin changes, clock
ticks with an injected `now`) and asserts on the exact transition, audit entries and state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from agent.config.matchers import Matcher
from agent.config.model import DegradationSettings
from agent.degradation.alerts import ActiveAlert, AlertBook, Change, WebhookAlert, WebhookPayload
from agent.degradation.levels import Level
from agent.degradation.policy import Cause, Contribution, Hysteresis, LevelState, Pin, Rule
from agent.degradation.policy import Suppression as Sup
from agent.degradation.state import FORMAT, KEEP_PIN, Policy, State, Step, advance

F, D, M, X = Level.FULL, Level.DEGRADED, Level.MINIMAL, Level.MAINTENANCE
T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)

POLICY = Policy(
    rules=(
        Rule("cache", (Matcher.parse('alertname="CacheDown"'),), D, frozenset({"recs"})),
        Rule("db", (Matcher.parse('alertname="DbDown"'),), M, frozenset({"search"})),
    ),
    severity_levels={"critical": M, "warning": D},
    severity_label="severity",
    hysteresis=Hysteresis(hold_seconds=60, step_down=False, flap_max_changes=3),
    alert_expiry_seconds=None,
    watchdog="Watchdog",
    tombstone_seconds=3600.0,
)
EXPIRING = dataclasses.replace(POLICY, alert_expiry_seconds=300.0)


def alert(fp: str, status: str = "firing", name: str = "CacheDown", **labels: str) -> WebhookAlert:
    """One alert message of the episode that started at T0."""
    return WebhookAlert(
        status=status, labels={"alertname": name, **labels}, fingerprint=fp, startsAt=T0
    )


def hook(*alerts: WebhookAlert, truncated: int = 0) -> WebhookPayload:
    """A webhook notification carrying `alerts`."""
    return WebhookPayload(
        version="4", status="firing", alerts=list(alerts), truncatedAlerts=truncated
    )


def pin(level: Level, expires_at: float | None = None, at: float = 0.0) -> Pin:
    """A pin set by alice."""
    return Pin(level, "alice", "drill", at, expires_at)


def fired(fp: str, name: str = "CacheDown") -> dict[str, Any]:
    """The audit entry of an alert that fired."""
    return {
        "action": "alert_fired",
        "fingerprint": fp,
        "alertname": name,
        "starts_at": T0.isoformat(),
    }


def resolved(fp: str, name: str = "CacheDown") -> dict[str, Any]:
    """The audit entry of an alert that resolved."""
    return {
        "action": "alert_resolved",
        "fingerprint": fp,
        "alertname": name,
        "starts_at": T0.isoformat(),
    }


def reason(fp: str, name: str, rule: str | None, level: Level) -> dict[str, Any]:
    """A contribution as the audit writes it."""
    return {"fingerprint": fp, "alertname": name, "rule": rule, "level": level.label}


def changed(
    frm: Level, to: Level, cause: Cause, reasons: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The audit entry of a level change."""
    return {
        "action": "level_changed",
        "from": frm.label,
        "to": to.label,
        "cause": cause.value,
        "reasons": reasons or [],
    }


def flags(off: list[str], on: list[str]) -> dict[str, Any]:
    """The audit entry of flags switched off and on."""
    return {"action": "flags_changed", "off": off, "on": on}


def held(why: Sup, level: Level, wanted: Level) -> dict[str, Any]:
    """The audit entry of a recovery held back."""
    return {
        "action": "transition_suppressed",
        "reason": why.value,
        "level": level.label,
        "wanted": wanted.label,
    }


def pin_json(p: Pin) -> dict[str, Any]:
    """A pin as the audit and the state document write it."""
    return {
        "level": p.level.label,
        "actor": p.actor,
        "reason": p.reason,
        "set_at": p.set_at,
        "expires_at": p.expires_at,
    }


Event = tuple[float, WebhookPayload | Pin | str | None]
"""At a time: a payload, a pin (set), None (unpin) or "tick"."""


def run(events: list[Event], policy: Policy = POLICY, state: State | None = None) -> list[Step]:
    """Feed `events` to `advance` in order, each step from the state the previous one left."""
    state = state or State()
    steps = []
    for now, event in events:
        if isinstance(event, WebhookPayload):
            step = advance(state, policy, now, event)
        elif event == "tick":
            step = advance(state, policy, now)
        else:
            step = advance(state, policy, now, pin=event)
        steps.append(step)
        state = step.state
    return steps


CACHE = reason("c", "CacheDown", "cache", D)
DB = reason("d", "DbDown", "db", M)
PIN_M = pin(M, expires_at=200.0)

# Each case: earlier events, the last event, then what the last step must produce.
CASES: dict[str, tuple[list[Event], Event, tuple[Level, Level, Cause] | None, list[Any]]] = {
    "alert escalates at once": (
        [],
        (100, hook(alert("c"))),
        (F, D, Cause.ALERT),
        [fired("c"), changed(F, D, Cause.ALERT, [CACHE]), flags(["recs"], [])],
    ),
    "a worse alert escalates further": (
        [(100, hook(alert("c")))],
        (110, hook(alert("d", name="DbDown"))),
        (D, M, Cause.ALERT),
        [fired("d", "DbDown"), changed(D, M, Cause.ALERT, [DB]), flags(["search"], [])],
    ),
    "resolve starts the hold and keeps the flags": (
        [(100, hook(alert("c")))],
        (110, hook(alert("c", "resolved"))),
        None,
        [resolved("c"), held(Sup.HOLD, D, F)],
    ),
    "still holding: nothing new to say": (
        [(100, hook(alert("c"))), (110, hook(alert("c", "resolved")))],
        (169, "tick"),
        None,
        [],
    ),
    "recovery after the hold switches the flags back on": (
        [(100, hook(alert("c"))), (110, hook(alert("c", "resolved")))],
        (170, "tick"),
        (D, F, Cause.RECOVERY),
        [changed(D, F, Cause.RECOVERY), flags([], ["recs"])],
    ),
    "recovery to what is still demanded": (
        [
            (100, hook(alert("c"), alert("d", name="DbDown"))),
            (110, hook(alert("d", "resolved", "DbDown"))),
        ],
        (170, "tick"),
        (M, D, Cause.RECOVERY),
        [changed(M, D, Cause.RECOVERY, [CACHE]), flags([], ["search"])],
    ),
    "pin set moves the level at once": (
        [],
        (100, PIN_M),
        (F, M, Cause.PIN),
        [{"action": "pin_set", "pin": pin_json(PIN_M)}, changed(F, M, Cause.PIN)],
    ),
    "pin below demand wins too": (
        [(100, hook(alert("d", name="DbDown")))],
        (110, pin(F)),
        (M, F, Cause.PIN),
        [{"action": "pin_set", "pin": pin_json(pin(F))}, changed(M, F, Cause.PIN, [DB])],
    ),
    "pin replaced by another pin": (
        [(100, PIN_M)],
        (110, pin(X)),
        (M, X, Cause.PIN),
        [{"action": "pin_set", "pin": pin_json(pin(X))}, changed(M, X, Cause.PIN)],
    ),
    "pin set to the current level changes nothing but the pin": (
        [(100, hook(alert("c")))],
        (110, pin(D)),
        None,
        [{"action": "pin_set", "pin": pin_json(pin(D))}],
    ),
    "unpin goes to the demand without a hold": (
        [(100, PIN_M)],
        (110, None),
        (M, F, Cause.UNPIN),
        [{"action": "pin_cleared"}, changed(M, F, Cause.UNPIN)],
    ),
    "unpin goes up to a higher demand": (
        [(100, pin(F)), (110, hook(alert("c")))],
        (120, None),
        (F, D, Cause.UNPIN),
        [{"action": "pin_cleared"}, changed(F, D, Cause.UNPIN, [CACHE])],
    ),
    "unpin at the demanded level changes no level": (
        [(100, hook(alert("c"))), (110, pin(D))],
        (120, None),
        None,
        [{"action": "pin_cleared"}],
    ),
    "unpin with no pin is no event": (
        [(100, hook(alert("c"))), (110, hook(alert("c", "resolved")))],
        (120, None),
        None,
        [],
    ),
    "expiring pin goes down to a lower demand": (
        [(100, hook(alert("c"))), (110, pin(M, expires_at=200.0))],
        (200, "tick"),
        (M, D, Cause.EXPIRY),
        [
            {"action": "pin_expired", "pin": pin_json(pin(M, 200.0))},
            changed(M, D, Cause.EXPIRY, [CACHE]),
        ],
    ),
    "expiring pin goes up to a higher demand": (
        [(100, pin(F, expires_at=200.0)), (110, hook(alert("d", name="DbDown")))],
        (200, "tick"),
        (F, M, Cause.EXPIRY),
        [
            {"action": "pin_expired", "pin": pin_json(pin(F, 200.0))},
            changed(F, M, Cause.EXPIRY, [DB]),
        ],
    ),
    "expiring pin at the demanded level": (
        [(100, hook(alert("c"))), (110, pin(D, expires_at=200.0))],
        (200, "tick"),
        None,
        [{"action": "pin_expired", "pin": pin_json(pin(D, 200.0))}],
    ),
    "pin still live one instant before it expires": (
        [(100, PIN_M)],
        (199.5, "tick"),
        None,
        [],
    ),
    "unmatched alert falls back to severity and is audited": (
        [],
        (100, hook(alert("u", name="Odd", severity="warning"))),
        (F, D, Cause.ALERT),
        [
            fired("u", "Odd"),
            {"action": "alert_unmatched", "fingerprint": "u"},
            changed(F, D, Cause.ALERT, [reason("u", "Odd", None, D)]),
        ],
    ),
    "unmatched alert already firing is not audited again": (
        [(100, hook(alert("u", name="Odd", severity="warning")))],
        (110, hook(alert("u", name="Odd", severity="warning"), alert("c"))),
        None,
        [fired("c"), flags(["recs"], [])],
    ),
    "resolve of an alert never seen": (
        [],
        (100, hook(alert("z", "resolved", "Gone"))),
        None,
        [
            {
                "action": "alert_unknown_resolve",
                "fingerprint": "z",
                "alertname": "Gone",
                "starts_at": T0.isoformat(),
            }
        ],
    ),
    "a truncated payload is audited": (
        [],
        (100, hook(alert("c"), truncated=7)),
        (F, D, Cause.ALERT),
        [
            fired("c"),
            {"action": "payload_truncated", "truncated": 7},
            changed(F, D, Cause.ALERT, [CACHE]),
            flags(["recs"], []),
        ],
    ),
}


@pytest.mark.parametrize(("history", "last", "transition", "audit"), CASES.values(), ids=CASES)
def test_advance_table(
    history: list[Event],
    last: Event,
    transition: tuple[Level, Level, Cause] | None,
    audit: list[dict[str, Any]],
) -> None:
    """Every cause of a transition, with its exact audit entries, from tables."""
    steps = run([*history, last])
    step = steps[-1]

    assert step.transition == transition
    assert step.audit == audit
    assert step.changed is bool(audit or transition)
    if transition is not None:
        assert step.state.level is transition[1]
        assert step.state.levels.since == last[0]


def test_watchdog_proves_delivery_and_demands_nothing() -> None:
    """A firing Watchdog only stamps heartbeat_at: no alert, no audit, no change, but stored."""
    step = advance(State(), POLICY, 100.0, hook(alert("w", name="Watchdog")))

    assert step.state.heartbeat_at == 100.0
    assert (step.audit, step.transition, step.changes) == ([], None, [])
    assert step.state.book == AlertBook()
    assert step.state.version == 1
    assert step.changed is False


def test_watchdog_among_other_alerts() -> None:
    """With other alerts in the payload, the Watchdog is left out of the book and the changes."""
    step = advance(State(), POLICY, 100.0, hook(alert("w", name="Watchdog"), alert("c")))

    assert step.state.heartbeat_at == 100.0
    assert step.changes == [Change.FIRED]
    assert set(step.state.book.active) == {"c"}


def test_a_resolved_watchdog_is_no_heartbeat() -> None:
    """Only a firing Watchdog counts; its resolve is ignored entirely."""
    step = advance(
        State(heartbeat_at=50.0), POLICY, 100.0, hook(alert("w", "resolved", "Watchdog"))
    )

    assert step.state.heartbeat_at == 50.0
    assert (step.audit, step.changes, step.state.version) == ([], [], 0)


def test_one_firing_watchdog_among_resolved_ones_is_a_heartbeat() -> None:
    """Any firing Watchdog in the payload is proof of delivery."""
    payload = hook(alert("w1", "resolved", "Watchdog"), alert("w2", name="Watchdog"))

    assert advance(State(), POLICY, 100.0, payload).state.heartbeat_at == 100.0


def test_the_watchdog_name_comes_from_the_policy() -> None:
    """A renamed Watchdog is recognised by its configured alertname, and "Watchdog" is not."""
    policy = dataclasses.replace(POLICY, watchdog="DeadMansSwitch")

    step = advance(
        State(), policy, 100.0, hook(alert("w", name="DeadMansSwitch"), alert("o", name="Watchdog"))
    )

    assert step.state.heartbeat_at == 100.0
    assert set(step.state.book.active) == {"o"}


def test_repeats_store_nothing_without_alert_expiry() -> None:
    """Without expiry a repeated notification changes nothing worth storing: same state."""
    first = advance(State(), POLICY, 100.0, hook(alert("c")))

    again = advance(first.state, POLICY, 160.0, hook(alert("c")))

    assert again.state is first.state
    assert (again.changes, again.audit, again.changed) == ([Change.DUPLICATE], [], False)


def test_repeats_refresh_last_seen_under_alert_expiry() -> None:
    """With expiry a repeat stores the new last_seen, so the alert does not expire."""
    first = advance(State(), EXPIRING, 100.0, hook(alert("c")))

    again = advance(first.state, EXPIRING, 350.0, hook(alert("c")))
    later = advance(again.state, EXPIRING, 600.0)

    assert again.state.book.active["c"].last_seen == 350.0
    assert (again.audit, again.state.version) == ([], 2)
    assert set(later.state.book.active) == {"c"}
    assert later.state is again.state


def test_an_alert_not_seen_for_the_expiry_expires() -> None:
    """An alert whose last sighting is older than alert_expiry_seconds is dropped and audited."""
    first = advance(State(), EXPIRING, 100.0, hook(alert("c")))

    kept = advance(first.state, EXPIRING, 400.0)
    expired = advance(first.state, EXPIRING, 400.5)

    assert kept.state is first.state
    assert expired.state.book.active == {}
    assert expired.state.book.buried_at == {"c": 400.5}
    assert expired.audit == [
        {"action": "alert_expired", "fingerprint": "c", "alertname": "CacheDown"},
        held(Sup.HOLD, D, F),
    ]
    assert expired.state.flags_off == {"recs"}  # kept while the recovery is held


def test_tombstones_are_forgotten_after_tombstone_seconds() -> None:
    """A tombstone stays for tombstone_seconds after its resolve, then the next step drops it."""
    resolved_step = run([(100, hook(alert("c"))), (110, hook(alert("c", "resolved")))])[-1]
    state = resolved_step.state

    kept = advance(state, POLICY, 110.0 + 3600.0)
    forgotten = advance(state, POLICY, 110.0 + 3600.5)

    assert kept.state.book.resolved == {"c": T0.timestamp()}
    assert forgotten.state.book.resolved == {}
    assert forgotten.state.book.buried_at == {}


def test_flags_follow_the_demand_but_stay_off_while_recovery_is_held() -> None:
    """Flags switch off with the alert, stay off during the hold, come back with the recovery."""
    steps = run(
        [
            (100, hook(alert("c"), alert("d", name="DbDown"))),
            (110, hook(alert("d", "resolved", "DbDown"))),
            (120, hook(alert("c", "resolved"))),
            (170, "tick"),
        ]
    )

    assert [sorted(s.state.flags_off) for s in steps] == [["recs", "search"]] * 3 + [[]]
    assert [s.state.suppressed for s in steps] == [None, Sup.HOLD, Sup.HOLD, None]
    assert steps[-1].audit == [changed(M, F, Cause.RECOVERY), flags([], ["recs", "search"])]
    assert steps[1].audit == [resolved("d", "DbDown"), held(Sup.HOLD, M, D)]
    assert steps[2].audit == [resolved("c")]  # still held: said once


def test_flap_guard_holds_recovery_through_advance() -> None:
    """Too many recent changes hold the recovery back: audited once, no transition, flags kept."""
    steps = run(
        [
            (100, hook(alert("c0"))),
            (110, hook(alert("c0", "resolved"))),
            (170, "tick"),
            (300, hook(alert("c1"))),
            (310, hook(alert("c1", "resolved"))),
        ]
    )
    held_step = advance(steps[-1].state, POLICY, 370.0)
    again = advance(held_step.state, POLICY, 380.0)
    later = advance(again.state, POLICY, 1900.0)  # the change at 100 has left the window

    assert [s.transition for s in steps if s.transition] == [
        (F, D, Cause.ALERT),
        (D, F, Cause.RECOVERY),
        (F, D, Cause.ALERT),
    ]
    assert held_step.state.levels == LevelState(D, 300.0, 310.0, (100.0, 170.0, 300.0))
    assert (held_step.transition, held_step.changed) == (None, True)
    assert held_step.audit == [held(Sup.FLAP, D, F)]
    assert held_step.state.flags_off == {"recs"}
    assert (again.audit, again.transition, again.state) == ([], None, held_step.state)
    assert later.transition == (D, F, Cause.RECOVERY)
    assert later.state.levels.changes == (170.0, 300.0, 1900.0)


FULL_STATE = State(
    version=7,
    levels=LevelState(M, 10.0, 20.0, (5.0, 10.0)),
    book=AlertBook(
        {"d": ActiveAlert("d", {"alertname": "DbDown"}, 1.0, 9.0)}, {"z": 2.0}, {"z": 8.0}
    ),
    pin=Pin(X, "bob", "upgrade", 3.0, 4.0),
    flags_off=frozenset({"search", "recs"}),
    reasons=(Contribution("d", "DbDown", "db", M), Contribution("u", "Odd", None, D)),
    suppressed=Sup.FLAP,
    updated_at=11.0,
    heartbeat_at=12.0,
)
FULL_DOCUMENT = {
    "format": 1,
    "version": 7,
    "level": "minimal",
    "since": 10.0,
    "calm_since": 20.0,
    "changes": [5.0, 10.0],
    "book": {
        "active": [
            {
                "fingerprint": "d",
                "labels": {"alertname": "DbDown"},
                "starts_at": 1.0,
                "last_seen": 9.0,
            }
        ],
        "resolved": {"z": 2.0},
        "buried_at": {"z": 8.0},
    },
    "pin": {
        "level": "maintenance",
        "actor": "bob",
        "reason": "upgrade",
        "set_at": 3.0,
        "expires_at": 4.0,
    },
    "flags_off": ["recs", "search"],
    "reasons": [reason("d", "DbDown", "db", M), reason("u", "Odd", None, D)],
    "suppressed": "flap",
    "updated_at": 11.0,
    "heartbeat_at": 12.0,
}


def test_state_document_has_every_field() -> None:
    """to_json writes the documented state document, field by field."""
    assert FULL_STATE.to_json() == FULL_DOCUMENT
    assert FULL_STATE.level is M


def test_state_document_round_trips() -> None:
    """from_json(to_json(s)) == s, with and without the optional parts."""
    bare = State()

    assert State.from_json(FULL_DOCUMENT) == FULL_STATE
    assert State.from_json(bare.to_json()) == bare
    assert bare.to_json()["pin"] is None
    assert bare.to_json()["suppressed"] is None


def test_state_document_values_are_converted() -> None:
    """Numbers and strings of a hand-written document come back as the state's types."""
    document: dict[str, Any] = {
        **FULL_DOCUMENT,
        "version": "7",
        "since": 10,
        "calm_since": "20",
        "changes": ["5", 10],
        "pin": {**FULL_DOCUMENT["pin"], "set_at": "3", "expires_at": 4, "actor": 5},
        "flags_off": [1],
        "reasons": [{"fingerprint": 1, "alertname": 2, "rule": "db", "level": "minimal"}],
        "updated_at": "11",
        "heartbeat_at": "12",
    }

    got = State.from_json(document)

    assert got.version == 7
    assert (got.levels.since, got.levels.calm_since, got.levels.changes) == (
        10.0,
        20.0,
        (5.0, 10.0),
    )
    assert all(
        type(t) is float for t in (got.levels.since, got.levels.calm_since, *got.levels.changes)
    )
    assert got.pin == Pin(X, "5", "upgrade", 3.0, 4.0)
    assert type(got.pin.set_at) is float
    assert type(got.pin.expires_at) is float
    assert got.flags_off == {"1"}
    assert got.reasons == (Contribution("1", "2", "db", M),)
    assert (got.updated_at, got.heartbeat_at) == (11.0, 12.0)
    assert type(got.updated_at) is float
    assert type(got.heartbeat_at) is float


def test_a_minimal_state_document_takes_the_defaults() -> None:
    """Only format, version, level and since are required; the rest default to empty."""
    document = {"format": 1, "version": 3, "level": "degraded", "since": 4.0}

    assert State.from_json(document) == State(version=3, levels=LevelState(D, 4.0, None, ()))


def test_a_pin_without_expiry_round_trips() -> None:
    """A pin until further notice is stored with expires_at null and read back as None."""
    state = State(pin=Pin(M, "a", "r", 1.0, None))
    document = state.to_json()
    del document["pin"]["expires_at"]

    assert State.from_json(state.to_json()) == state
    assert State.from_json(document).pin == state.pin


def test_tombstones_without_times_count_from_the_state_time() -> None:
    """An older document without tombstone times gives them the state's updated_at."""
    document = {**FULL_DOCUMENT, "book": {"resolved": {"z": 2.0}}}

    assert State.from_json(document).book.buried_at == {"z": 11.0}
    no_time = {k: v for k, v in document.items() if k != "updated_at"}
    assert State.from_json(no_time).book.buried_at == {"z": 0.0}
    assert State.from_json(no_time).updated_at == 0.0


@pytest.mark.parametrize("fmt", [None, 0, 2, "1"])
def test_other_state_formats_are_refused(fmt: object) -> None:
    """A document of another format (or none) raises ValueError naming the format."""
    document = {**FULL_DOCUMENT, "format": fmt}

    with pytest.raises(ValueError, match=r"^unknown state format") as caught:
        State.from_json(document)

    assert str(caught.value) == f"unknown state format {fmt!r}"
    assert FORMAT == 1


def test_policy_compiles_settings() -> None:
    """from_settings turns validated settings into rules, levels and hysteresis, value by value."""
    settings = DegradationSettings(
        hold_seconds=30,
        step_down=True,
        flap_max_changes=4,
        flap_window_seconds=900,
        alert_expiry_seconds=120,
        tombstone_seconds=7200,
        severity_label="prio",
        severity_levels={"p1": "maintenance", "p2": "degraded"},
        rules=[
            {"name": "cache", "matchers": ['alertname="CacheDown"'], "flags_off": ["recs"]},
            {"name": "db", "matchers": ['alertname="DbDown"', 'env!="dev"'], "level": "minimal"},
        ],
        watchdog={"alertname": "Heartbeat"},
    )

    policy = Policy.from_settings(settings)

    assert policy == Policy(
        rules=(
            Rule("cache", (Matcher.parse('alertname="CacheDown"'),), None, frozenset({"recs"})),
            Rule(
                "db",
                (Matcher.parse('alertname="DbDown"'), Matcher.parse('env!="dev"')),
                M,
                frozenset(),
            ),
        ),
        severity_levels={"p1": X, "p2": D},
        severity_label="prio",
        hysteresis=Hysteresis(30, True, 4, 900),
        alert_expiry_seconds=120,
        watchdog="Heartbeat",
        tombstone_seconds=7200,
    )


def test_step_changed_means_audit_or_transition() -> None:
    """A step is worth telling about when it has audit entries or a transition."""
    state = State()

    assert Step(state, [], None, []).changed is False
    assert Step(state, [{"action": "x"}], None, []).changed is True
    assert Step(state, [], (F, D, Cause.ALERT), []).changed is True


def test_the_next_state_carries_every_field() -> None:
    """A stored step bumps the version and records level, book, pin, flags, reasons and time."""
    p = pin(X, expires_at=500.0, at=100.0)
    start = State(version=4, heartbeat_at=1.0)
    steps = run([(100, hook(alert("c"), alert("w", name="Watchdog"))), (110, p)], state=start)

    assert steps[0].state == State(
        version=5,
        levels=LevelState(D, 100.0, None, (100.0,)),
        book=AlertBook({"c": ActiveAlert("c", {"alertname": "CacheDown"}, T0.timestamp(), 100.0)}),
        pin=None,
        flags_off=frozenset({"recs"}),
        reasons=(Contribution("c", "CacheDown", "cache", D),),
        suppressed=None,
        updated_at=100.0,
        heartbeat_at=100.0,
    )
    assert steps[1].state == dataclasses.replace(
        steps[0].state,
        version=6,
        levels=LevelState(X, 110.0, None, (100.0, 110.0)),
        pin=p,
        updated_at=110.0,
    )


def test_an_expired_pin_is_removed_from_the_state() -> None:
    """Once its expiry has been applied the pin is gone, and later ticks say nothing."""
    steps = run([(100, pin(M, expires_at=200.0)), (200, "tick"), (300, "tick")])

    assert steps[1].state.pin is None
    assert steps[2].state is steps[1].state


def test_clearing_a_pin_during_a_hold_keeps_the_hold() -> None:
    """Unpinning when no pin is set neither skips the hold nor moves the level."""
    steps = run(
        [
            (100, hook(alert("c"))),
            (110, hook(alert("c", "resolved"))),
            (120, None),
            (169, "tick"),
            (170, "tick"),
        ]
    )

    assert [s.transition for s in steps] == [
        (F, D, Cause.ALERT),
        None,
        None,
        None,
        (D, F, Cause.RECOVERY),
    ]
    assert [s.state.suppressed for s in steps] == [None, Sup.HOLD, Sup.HOLD, Sup.HOLD, None]


def test_a_keep_pin_argument_keeps_the_pin() -> None:
    """pin=KEEP_PIN (the default) leaves a live pin in place."""
    state = run([(100, pin(M))])[-1].state

    assert advance(state, POLICY, 150.0, pin=KEEP_PIN).state is state
    assert advance(state, POLICY, 150.0, hook(alert("d", name="DbDown"))).state.pin == pin(M)


def test_an_alert_without_alertname_is_audited_with_an_empty_name() -> None:
    """The audit names an alert by its alertname label, the empty string when it has none."""
    nameless = WebhookAlert(
        status="firing", labels={"severity": "warning"}, fingerprint="n", startsAt=T0
    )

    step = advance(State(), POLICY, 100.0, hook(nameless))

    assert step.audit[:2] == [
        {"action": "alert_fired", "fingerprint": "n", "alertname": "", "starts_at": T0.isoformat()},
        {"action": "alert_unmatched", "fingerprint": "n"},
    ]


def test_changes_leaving_the_flap_window_are_pruned_and_stored() -> None:
    """A tick that only drops changes older than the flap window stores that, with no audit."""
    state = run([(100, hook(alert("c")))])[-1].state

    kept = advance(state, POLICY, 1899.0)
    pruned = advance(state, POLICY, 1900.0)

    assert kept.state is state
    assert pruned.state.levels == LevelState(D, 100.0, None, ())
    assert (pruned.audit, pruned.transition, pruned.state.version) == ([], None, 2)


def test_demand_back_at_the_level_ends_the_hold() -> None:
    """When demand rises back to the level during a hold, calm ends; only the alert is audited."""
    calm = run([(100, hook(alert("c"))), (110, hook(alert("c", "resolved")))])[-1].state

    back = advance(calm, POLICY, 130.0, hook(alert("c9")))

    assert calm.levels.calm_since == 110.0
    assert back.state.levels == dataclasses.replace(calm.levels, calm_since=None)
    assert back.state.suppressed is None
    assert back.audit == [fired("c9")]


def test_a_tick_with_an_unmatched_alert_active_says_nothing() -> None:
    """alert_unmatched is written when the alert fires, not on later ticks while it is active."""
    state = run([(100, hook(alert("u", name="Odd", severity="warning")))])[-1].state

    step = advance(state, POLICY, 150.0)

    assert (step.audit, step.transition, step.state) == ([], None, state)


def test_alert_expiry_keeps_the_other_audit_entries_of_the_step() -> None:
    """With alert expiry on, a step's alert and level entries come before its expiries."""
    first = advance(State(), EXPIRING, 100.0, hook(alert("c")))

    step = advance(first.state, EXPIRING, 500.0, hook(alert("d", name="DbDown")))

    assert first.audit == [fired("c"), changed(F, D, Cause.ALERT, [CACHE]), flags(["recs"], [])]
    assert step.audit == [
        fired("d", "DbDown"),
        {"action": "alert_expired", "fingerprint": "c", "alertname": "CacheDown"},
        changed(D, M, Cause.ALERT, [DB]),
        flags(["search"], ["recs"]),
    ]


def test_the_severity_label_comes_from_the_policy() -> None:
    """An unmatched alert's level is read from the label the policy names."""
    policy = dataclasses.replace(POLICY, severity_label="prio")
    payload = hook(alert("u", name="Odd", prio="critical", severity="warning"))

    step = advance(State(), policy, 100.0, payload)

    assert step.transition == (F, M, Cause.ALERT)
