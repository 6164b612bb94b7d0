"""The pure policy: matchers, demand, and `decide` driven from tables with explicit times."""

from __future__ import annotations

import dataclasses

import pytest

from agent.degradation.alerts import ActiveAlert
from agent.degradation.levels import Level
from agent.degradation.policy import (
    Cause,
    Decision,
    Hysteresis,
    LevelState,
    Matcher,
    Pin,
    Rule,
    Suppression,
    decide,
    demand,
)

F, D, M, X = Level.FULL, Level.DEGRADED, Level.MINIMAL, Level.MAINTENANCE


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('alertname="RedisDown"', {"alertname": "RedisDown"}, True),
        ('alertname="RedisDown"', {"alertname": "RedisDownX"}, False),
        ('severity!="info"', {"severity": "critical"}, True),
        ('severity!="info"', {}, True),
        ('check=~"redis-.*"', {"check": "redis-cache"}, True),
        ('check=~"redis"', {"check": "redis-cache"}, False),  # anchored like Alertmanager
        ('check!~"redis-.*"', {"check": "pg"}, True),
        ('team=""', {}, True),  # a missing label is the empty string
        ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], hit: bool) -> None:
    """Alertmanager matcher syntax and semantics: =, !=, anchored =~ and !~."""
    assert Matcher.parse(text).matches(labels) is hit


@pytest.mark.parametrize("bad", ["alertname=RedisDown", 'a=~"("', '="x"', 'a=="x"'])
def test_bad_matchers_are_refused(bad: str) -> None:
    """Malformed matchers and bad regexes raise ValueError naming the matcher."""
    with pytest.raises(ValueError, match="matcher"):
        Matcher.parse(bad)


def _alert(fp: str, **labels: str) -> ActiveAlert:
    return ActiveAlert(fp, labels, 0.0, 0.0)


RULES = [
    Rule("cache", (Matcher.parse('alertname="CacheDown"'),), D, frozenset({"recs"})),
    Rule("db", (Matcher.parse('alertname="DbDown"'),), M, frozenset()),
    Rule("flags-only", (Matcher.parse('team="search"'),), None, frozenset({"search"})),
]
SEVERITY = {"critical": M, "warning": D}


def test_demand_is_worst_rule_and_union_of_flags() -> None:
    """The worst matching level wins; flags of every matching rule are switched off."""
    got = demand(
        [_alert("a", alertname="CacheDown"), _alert("b", alertname="DbDown", team="search")],
        RULES,
        SEVERITY,
    )

    assert got.level is M
    assert got.flags_off == {"recs", "search"}
    assert [c.fingerprint for c in got.reasons] == ["b"]
    assert got.unmatched == ()


def test_unmatched_alert_falls_back_to_severity() -> None:
    """An alert no rule matches demands its severity's level and is listed as unmatched."""
    got = demand([_alert("z", alertname="Other", severity="warning")], RULES, SEVERITY)

    assert (got.level, got.unmatched) == (D, ("z",))
    assert got.reasons[0].rule is None


def test_no_alerts_is_full() -> None:
    """Nothing firing demands full."""
    assert demand([], RULES, SEVERITY).level is F


POLICY = Hysteresis(hold_seconds=60, step_down=False, flap_max_changes=3, flap_window_seconds=600)


@pytest.mark.parametrize(
    ("level", "calm_since", "wanted", "now", "expect", "cause", "suppressed"),
    [
        (F, None, M, 100, M, Cause.ALERT, None),  # escalate at once
        (D, None, M, 100, M, Cause.ALERT, None),
        (M, None, M, 100, M, None, None),  # steady
        (M, None, F, 100, M, None, Suppression.HOLD),  # calm starts now: hold
        (M, 50, F, 100, M, None, Suppression.HOLD),  # 50 s of calm < 60 s hold
        (M, 40, F, 100, F, Cause.RECOVERY, None),  # 60 s of calm: recover fully
        (M, 40, D, 100, D, Cause.RECOVERY, None),  # recover to what is still demanded
    ],
)
def test_decide_table(
    level: Level,
    calm_since: float | None,
    wanted: Level,
    now: float,
    expect: Level,
    cause: Cause | None,
    suppressed: Suppression | None,
) -> None:
    """Escalation is immediate; recovery waits for the hold with no higher demand."""
    got = decide(LevelState(level, 0.0, calm_since, ()), wanted, None, POLICY, now)

    assert (got.state.level, got.cause, got.suppressed) == (expect, cause, suppressed)
    assert got.changed is (cause is not None)


def test_higher_demand_restarts_the_hold() -> None:
    """Demand rising back to the level during the hold resets the calm clock."""
    s = decide(LevelState(M, 0.0, None, ()), F, None, POLICY, 10).state
    s = decide(s, M, None, POLICY, 40).state
    s = decide(s, F, None, POLICY, 69).state

    held = decide(s, F, None, POLICY, 100)  # only 31 s since calm began again at 69
    assert (held.state.level, held.suppressed) == (M, Suppression.HOLD)
    assert decide(held.state, F, None, POLICY, 129).state.level is F


def test_step_down_one_level_per_hold() -> None:
    """With step_down, recovery goes one level per hold period."""
    policy = Hysteresis(hold_seconds=60, step_down=True, flap_max_changes=10)
    s = LevelState(X, 0.0, 0.0, ())

    first = decide(s, F, None, policy, 60)
    second_early = decide(first.state, F, None, policy, 100)
    second = decide(first.state, F, None, policy, 120)

    assert first.state.level is M
    assert second_early.state.level is M
    assert second.state.level is D


def test_flap_guard_stops_recovery() -> None:
    """After N changes inside the window recovery is suppressed (escalation still happens)."""
    s = LevelState(M, 0.0, 0.0, (10.0, 20.0, 30.0))

    held = decide(s, F, None, POLICY, 100)
    escalate = decide(LevelState(D, 0.0, None, (10.0, 20.0, 30.0)), M, None, POLICY, 100)
    later = decide(held.state, F, None, POLICY, 700)  # old changes left the window

    assert (held.state.level, held.suppressed) == (M, Suppression.FLAP)
    assert escalate.state.level is M
    assert later.state.level is F


def test_pin_wins_both_ways_and_expiry_returns_to_demand() -> None:
    """A live pin sets the level regardless of demand; expired, the demand applies at once."""
    pin = Pin(F, "alice", "false alarm", set_at=0, expires_at=200)
    pinned = decide(LevelState(M, 0.0, None, ()), M, pin, POLICY, 100)
    expired = decide(pinned.state, D, pin, POLICY, 200)
    maintenance = decide(LevelState(F), F, Pin(X, "bob", "db upgrade", 0, None), POLICY, 5)

    assert (pinned.state.level, pinned.cause) == (F, Cause.PIN)
    assert (expired.state.level, expired.cause) == (D, Cause.EXPIRY)
    assert maintenance.state.level is X


def test_unpin_applies_demand_without_hold() -> None:
    """Removing a pin moves straight to the demanded level, up or down."""
    down = decide(LevelState(X, 0.0, None, ()), F, None, POLICY, 5, pin_changed=True)
    up = decide(LevelState(F, 0.0, None, ()), M, None, POLICY, 5, pin_changed=True)

    assert (down.state.level, down.cause) == (F, Cause.UNPIN)
    assert (up.state.level, up.cause) == (M, Cause.UNPIN)


def test_flags_only_rule_leaves_the_level_to_severity() -> None:
    """An alert matched only by a flags-only rule demands its severity's level, flags included."""
    got = demand([_alert("s", alertname="X", team="search", severity="critical")], RULES, SEVERITY)

    assert (got.level, got.flags_off, got.unmatched) == (M, frozenset({"search"}), ())


def test_missing_severity_reads_as_the_empty_string() -> None:
    """An alert without a severity label gets the level mapped to "", matched by a rule or not."""
    severity = {"": D, "critical": M}
    alerts = [_alert("n", alertname="Other"), _alert("s", alertname="X", team="search")]

    got = demand(alerts, RULES, severity)

    assert got.level is D
    assert [(c.fingerprint, c.level) for c in got.contributions] == [("n", D), ("s", D)]


def test_flags_only_rule_without_severity_demands_full() -> None:
    """A flags-only rule on an alert with no known severity demands full and switches its flags."""
    got = demand([_alert("s", alertname="X", team="search")], RULES, SEVERITY)

    assert (got.level, got.flags_off, got.reasons) == (F, frozenset({"search"}), [])


def test_contributions_name_alert_and_rule() -> None:
    """Each alert's contribution carries its fingerprint, alertname, first matching rule, level."""
    got = demand(
        [_alert("b", alertname="DbDown"), _alert("a", alertname="Other", severity="warning")],
        RULES,
        SEVERITY,
    )

    assert [dataclasses.astuple(c) for c in got.contributions] == [
        ("a", "Other", None, D),
        ("b", "DbDown", "db", M),
    ]


def test_pin_at_the_current_level_changes_nothing_but_resets_calm() -> None:
    """A pin at the level already held is no change: calm is reset and old changes pruned."""
    state = LevelState(M, 5.0, 40.0, (100.0, 700.0))

    got = decide(state, F, Pin(M, "a", "r", 0, None), POLICY, 800)

    assert got == Decision(LevelState(M, 5.0, None, (700.0,)), False, None, None)


def test_unpin_at_the_demanded_level_changes_nothing() -> None:
    """Removing a pin when demand equals the level keeps it, with calm reset."""
    got = decide(LevelState(D, 5.0, 40.0, (100.0,)), D, None, POLICY, 800, pin_changed=True)

    assert got == Decision(LevelState(D, 5.0, None, ()), False, None, None)


@pytest.mark.parametrize(
    ("state", "wanted", "pin", "pin_changed", "expect"),
    [
        # escalation: the new level, since now, the change recorded, old changes dropped
        (
            LevelState(F, 0.0, None, (100.0, 401.0)),
            M,
            None,
            False,
            LevelState(M, 1000.0, None, (401.0, 1000.0)),
        ),
        # a change exactly flap_window_seconds old has left the window
        (
            LevelState(F, 0.0, None, (400.0,)),
            D,
            None,
            False,
            LevelState(D, 1000.0, None, (1000.0,)),
        ),
        # steady: nothing but the pruning of old changes
        (
            LevelState(M, 7.0, 900.0, (100.0, 401.0)),
            M,
            None,
            False,
            LevelState(M, 7.0, None, (401.0,)),
        ),
        # held: calm starts, old changes pruned
        (
            LevelState(M, 7.0, None, (100.0, 401.0)),
            F,
            None,
            False,
            LevelState(M, 7.0, 1000.0, (401.0,)),
        ),
        # recovery to the demand: calm over
        (
            LevelState(M, 7.0, 900.0, (100.0,)),
            F,
            None,
            False,
            LevelState(F, 1000.0, None, (1000.0,)),
        ),
        # unpinned below the level: straight down
        (LevelState(X, 7.0, None, ()), D, None, True, LevelState(D, 1000.0, None, (1000.0,))),
        # an expired pin above demand: down, cause expiry
        (
            LevelState(M, 7.0, None, ()),
            F,
            Pin(M, "a", "r", 0, 1000.0),
            False,
            LevelState(F, 1000.0, None, (1000.0,)),
        ),
    ],
)
def test_decide_records_the_exact_state(
    state: LevelState, wanted: Level, pin: Pin | None, pin_changed: bool, expect: LevelState
) -> None:
    """The state after a decision: level, since, calm start and the changes in the flap window."""
    got = decide(state, wanted, pin, POLICY, 1000.0, pin_changed=pin_changed)

    assert got.state == expect


def test_expired_pin_above_demand_recovers_with_cause_expiry() -> None:
    """A pin that expires while demand is lower moves down at once, and says it was expiry."""
    pin = Pin(M, "alice", "drill", 0, 200)

    got = decide(LevelState(M, 0.0, None, ()), F, pin, POLICY, 200)

    assert (got.state.level, got.changed, got.cause) == (F, True, Cause.EXPIRY)


def test_flap_guard_holds_an_exact_state_and_reports_no_change() -> None:
    """Held by the flap guard: no change, calm kept from its start, old changes pruned."""
    no_hold = Hysteresis(hold_seconds=0, flap_max_changes=2, flap_window_seconds=600)
    state = LevelState(M, 0.0, None, (100.0, 500.0, 900.0))

    got = decide(state, F, None, no_hold, 1000.0)

    assert got == Decision(
        LevelState(M, 0.0, 1000.0, (500.0, 900.0)), False, None, Suppression.FLAP
    )


def test_step_down_keeps_calm_running_until_the_demand_is_reached() -> None:
    """Stepping down starts a fresh hold; the last step, onto the demand, ends calm."""
    policy = Hysteresis(hold_seconds=60, step_down=True, flap_max_changes=10)

    first = decide(LevelState(M, 0.0, 0.0, ()), F, None, policy, 60)
    last = decide(first.state, F, None, policy, 120)

    assert first.state == LevelState(D, 60.0, 60.0, (60.0,))
    assert last.state == LevelState(F, 120.0, None, (60.0, 120.0))
