"""Every catalogue metric earns its place: a shipped rule or dashboard reads it, or the catalogue
says it is informational (kept for people and ad-hoc queries, not for automation)."""

from __future__ import annotations

from agent.telemetry.catalogue import CATALOGUE
from tests.contract.test_alert_rules import _metrics_and_labels, _rules
from tests.contract.test_dashboards import _all_queries


def _used_families() -> set[str]:
    exprs = [str(rule["expr"]) for rule in _rules()] + [expr for _, expr in _all_queries()]
    used: set[str] = set()
    for expr in exprs:
        names, _, _ = _metrics_and_labels(expr)
        used |= names
    # A histogram is read through its series.
    return {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in used} | (
        used
    )


def test_every_signal_is_used_or_informational() -> None:
    """A signal no rule or dashboard reads must be marked informational in the catalogue."""
    used = _used_families()
    unused = [
        s.prometheus_name
        for s in CATALOGUE
        if s.prometheus_name not in used and not s.informational and s.scope != "library"
    ]

    assert unused == [], f"read by no rule or dashboard and not informational: {unused}"


def test_informational_signals_are_really_unused() -> None:
    """A signal marked informational is not read by a shipped rule or dashboard (keep it honest)."""
    used = _used_families()

    assert [
        s.prometheus_name for s in CATALOGUE if s.informational and s.prometheus_name in used
    ] == []
