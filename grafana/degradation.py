"""The degradation dashboard, and the degradation panels the overview shows too.

Panels are functions, not constants: an SDK builder is mutable and the dashboard sets its id and
position, so each dashboard gets panels of its own.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models.common import LineInterpolation
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.frame import PrometheusAnnotation, dashboard
from grafana.panels import (
    LEVEL_NAMES,
    YES_NO_NAMES,
    runbook_link,
    stat_panel,
    state_timeline_panel,
    table_panel,
    thresholds,
    timeseries_panel,
)
from grafana.queries import rate_by, sel

LEVEL = f"max by (instance) ({sel('vigil_degradation_level_index')})"
PINNED_TOO_LONG = "degradation.md#vigildegradationpinnedtoolong"


def transitions() -> PrometheusAnnotation:
    """A marker wherever the degradation level of an agent changed."""
    return PrometheusAnnotation(
        "Degradation transitions",
        f"changes({sel('vigil_degradation_level_index')}[$__interval]) > 0",
        title="Degradation level changed",
        text="{{instance}}: level index changed (see the transitions panel for from/to/cause)",
        colour="orange",
    )


def level_now() -> stat.Panel:
    """The effective level of each agent."""
    return (
        stat_panel(
            "Degradation level",
            "Effective degradation level the agent enforces now (full, degraded, minimal, "
            "maintenance).",
            "none",
            LEVEL,
            legend="{{instance}}",
        )
        .mappings(LEVEL_NAMES)
        .links([runbook_link("minimal or worse", "degradation.md#vigildegradationminimalorworse")])
    )


def level_over_time() -> statetimeline.Panel:
    """The effective level of each agent over time."""
    return (
        state_timeline_panel(
            "Degradation level over time",
            "Effective level per agent; transitions are annotated (changes of the level index).",
            "none",
            LEVEL,
            legend="{{instance}}",
            height=6,
        )
        .mappings(LEVEL_NAMES)
        .links([runbook_link("degradation", "degradation.md")])
    )


def alerts_active() -> stat.Panel:
    """How many alerts each agent's engine holds as firing."""
    return stat_panel(
        "Active alerts (agent view)",
        "Alerts the degradation engine currently holds as firing (from Alertmanager's webhook).",
        "short",
        f"sum by (instance) ({sel('vigil_degradation_alerts_active')})",
        legend="{{instance}}",
    ).thresholds(thresholds(("green", None), ("orange", 1)))


def flags_off() -> table.Panel:
    """The flags a degradation rule switched off."""
    return table_panel(
        "Flags switched off by degradation",
        "Flags a degradation rule switched off because a matching alert is firing (1 = off).",
        "none",
        f"{sel('vigil_degradation_flags_off')} == 1",
        height=6,
    ).links([runbook_link("degradation", "degradation.md")])


def transitions_by_cause() -> timeseries.Panel:
    """Level transitions over time, by from, to and cause."""
    return timeseries_panel(
        "Level transitions by cause",
        "Level transitions per $__rate_interval, by from, to and cause (why the level moved).",
        "short",
        rate_by("vigil_degradation_transitions_total", "from, to, cause", "increase"),
        legend="{{from}} → {{to}} ({{cause}})",
        height=6,
    ).line_interpolation(LineInterpolation.STEP_AFTER)


def _pinned() -> stat.Panel:
    return (
        stat_panel(
            "Pinned",
            "Whether a manual pin sets the level (yes) or the alerts do (no).",
            "none",
            f"max by (instance) ({sel('vigil_degradation_pinned')})",
            legend="{{instance}}",
        )
        .mappings(YES_NO_NAMES)
        .links([runbook_link("pinned too long", PINNED_TOO_LONG)])
    )


def _pin_age() -> stat.Panel:
    return (
        stat_panel(
            "Pin age",
            "How long the current pin has been in place (no value when not pinned).",
            "s",
            f"time() - {sel('vigil_degradation_pin_set_timestamp_seconds')}",
            legend="{{instance}}",
        )
        .thresholds(thresholds(("green", None), ("orange", 4 * 3600)))
        .links([runbook_link("pinned too long", PINNED_TOO_LONG)])
    )


def _engine_health() -> list[timeseries.Panel]:
    suppressed = timeseries_panel(
        "Suppressed recoveries",
        "Recoveries held back per $__rate_interval, by reason (hold, flap).",
        "short",
        rate_by("vigil_degradation_suppressed_total", "reason", "increase"),
        legend="{{reason}}",
        span=8,
    )
    webhook = timeseries_panel(
        "Webhook requests by outcome",
        "Alertmanager webhook requests per second by outcome (anything but accepted is a refusal).",
        "reqps",
        rate_by("vigil_degradation_webhook_requests_total", "outcome"),
        legend="{{outcome}}",
        span=8,
    ).links([runbook_link("webhook failing", "degradation.md#vigildegradationwebhookfailing")])
    staleness = (
        timeseries_panel(
            "State staleness",
            "Seconds the engine's state has not been confirmed by its shared store.",
            "s",
            sel("vigil_degradation_state_staleness_seconds"),
            legend="{{instance}}",
            span=8,
        )
        .thresholds(thresholds(("green", None), ("red", 120)))
        .links([runbook_link("state stale", "degradation.md#vigildegradationstatestale")])
    )
    return [suppressed, webhook, staleness]


def _alerts_and_flags() -> list[timeseries.Panel]:
    alerts = timeseries_panel(
        "Active alerts over time",
        "Alerts the degradation engine holds as firing.",
        "short",
        sel("vigil_degradation_alerts_active"),
        legend="{{instance}}",
        span=8,
    ).line_interpolation(LineInterpolation.STEP_AFTER)
    reconcile = timeseries_panel(
        "Reconcile polls by outcome",
        "Polls of Alertmanager's alert list per second by outcome.",
        "ops",
        rate_by("vigil_degradation_reconcile_runs_total", "outcome"),
        legend="{{outcome}}",
        span=8,
    ).links([runbook_link("degradation", "degradation.md")])
    evaluations = timeseries_panel(
        "Flag evaluations by flag and reason",
        "Flag evaluations per second by flag and by the reason for the answer.",
        "ops",
        rate_by("vigil_flags_evaluations_total", "flag, reason"),
        legend="{{flag}}: {{reason}}",
        span=8,
    )
    return [alerts, reconcile, evaluations]


def build() -> Dashboard:
    """Vigil / Degradation and flags."""
    return dashboard(
        "vigil-degradation",
        "Vigil / Degradation and flags",
        "Degradation level, transitions, pins, webhook and reconcile health, and flag evaluations.",
        [
            [level_now(), alerts_active(), _pinned(), _pin_age()],
            [level_over_time()],
            [transitions_by_cause(), flags_off()],
            _engine_health(),
            _alerts_and_flags(),
        ],
        [transitions()],
    )
