"""The overview dashboard: overall and per-check status, degradation level, agents."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, statetimeline, table
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana import degradation
from grafana.frame import dashboard
from grafana.panels import (
    STATE_COLUMN,
    STATUS_NAMES,
    coloured_cells,
    runbook_link,
    stat_panel,
    state_timeline_panel,
    table_panel,
    thresholds,
)
from grafana.queries import sel, state_index


def _status() -> list[stat.Panel]:
    overall = (
        stat_panel(
            "Overall status",
            "Overall status of each agent: healthy, degraded, unhealthy or unknown.",
            "none",
            state_index("vigil_health_status", "instance"),
            legend="{{instance}}",
        )
        .mappings(STATUS_NAMES)
        .links([runbook_link("health degraded", "checks.md#vigilhealthdegraded")])
    )
    unhealthy = (
        stat_panel(
            "Unhealthy checks",
            "Checks whose current status is unhealthy (critical or not).",
            "short",
            "sum(" + sel("vigil_check_status", 'state="unhealthy"') + ")",
        )
        .thresholds(thresholds(("green", None), ("red", 1)))
        .links([runbook_link("critical check unhealthy", "checks.md#vigilcriticalcheckunhealthy")])
    )
    return [overall, unhealthy, degradation.level_now(), degradation.alerts_active()]


def _checks() -> list[table.Panel | statetimeline.Panel]:
    now = (
        table_panel(
            "Check status",
            "Current status of every check (one row per check and agent).",
            "none",
            f"{sel('vigil_check_status')} == 1",
            height=8,
            hidden=("job", "Value"),
        )
        .override_by_name("state", coloured_cells(STATE_COLUMN))
        .links([runbook_link("checks", "checks.md")])
    )
    over_time = (
        state_timeline_panel(
            "Check status over time",
            "Status of every check over time (0 healthy, 1 degraded, 2 unhealthy, 3 unknown).",
            "none",
            state_index("vigil_check_status", "instance, check"),
            legend="{{check}} ({{instance}})",
            span=12,
            height=8,
        )
        .mappings(STATUS_NAMES)
        .links([runbook_link("checks", "checks.md")])
    )
    return [now, over_time]


def _agents() -> list[table.Panel | stat.Panel]:
    uptime = table_panel(
        "Agents",
        "Agents by version, and how long each has been up.",
        "s",
        f"time() - {sel('vigil_agent_start_timestamp_seconds')}",
        height=5,
        value_column="uptime",
    ).links([runbook_link("agent down", "agent.md#vigilagentdown")])
    versions = stat_panel(
        "Agent versions",
        "Agents per version (vigil_agent_info).",
        "short",
        f"count by (version) ({sel('vigil_agent_info')})",
        legend="{{version}}",
        span=12,
    )
    return [uptime, versions]


def build() -> Dashboard:
    """Vigil / Overview."""
    return dashboard(
        "vigil-overview",
        "Vigil / Overview",
        "Overall and per-check status, degradation level and the alerts the agent acts on.",
        [
            _status(),
            _checks(),
            [degradation.level_over_time()],
            [degradation.flags_off(), degradation.transitions_by_cause()],
            _agents(),
        ],
        [degradation.transitions()],
    )
