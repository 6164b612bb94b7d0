"""Generate Vigil's Grafana dashboards (classic JSON model) from a small typed builder.

Run ``.venv/bin/python grafana/build.py`` to (re)write ``grafana/dashboards/*.json``;
``--check`` writes nothing and exits 1 when a committed file differs from what this module builds.
The builder has no dependency beyond the standard library, so the output is reproducible.

Conventions every dashboard follows (and ``tests/contract/test_dashboards.py`` lints):

* a ``datasource`` template variable; every panel, target, variable and annotation uses
  ``${datasource}`` (no ``__inputs``, no hard-coded datasource uid);
* ``job`` and ``instance`` variables from ``vigil_agent_info``; every metric selector is built
  by :func:`sel` and so carries ``job=~"$job",instance=~"$instance"``;
* ``rate``/``increase`` windows are ``$__rate_interval``;
* every panel has a unit and a description; runbook links point at ``docs/runbooks`` sections
  under the ``runbook_base`` variable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39
TAGS = ["vigil"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RUNBOOK_BASE_DEFAULT = "https://docs.example.internal/vigil/docs/runbooks"
SELECTOR = 'job=~"$job",instance=~"$instance"'
GRID_WIDTH = 24

Json = dict[str, Any]


def sel(metric: str, extra: str = "") -> str:
    """A selector for ``metric`` restricted to the dashboard's ``job`` and ``instance``.

    ``extra`` is further label matchers, e.g. ``'state="healthy"'``.
    """
    matchers = SELECTOR + ("," + extra if extra else "")
    return f"{metric}{{{matchers}}}"


def runbook(page: str, anchor: str = "") -> str:
    """The URL of a runbook page (and section) under the ``runbook_base`` variable."""
    return "${runbook_base}/" + page + (f"#{anchor}" if anchor else "")


def state_index(metric: str, by: str, extra: str = "") -> str:
    """Turn a one-series-per-``state`` gauge into one number: 0 healthy … 3 unknown.

    Non-current states are 0, so the max over the weighted series is the current state's index.
    """
    extra = "," + extra if extra else ""
    weights = (("healthy", 0), ("degraded", 1), ("unhealthy", 2), ("unknown", 3))
    parts = " or ".join(sel(metric, 'state="' + s + '"' + extra) + f" * {w}" for s, w in weights)
    return f"max by ({by}) ({parts})"


def _value_mappings(*entries: tuple[str, str]) -> list[Json]:
    """A Grafana value mapping: 0, 1, ... shown as the given (text, colour) pairs."""
    options = {str(i): {"text": t, "color": c, "index": i} for i, (t, c) in enumerate(entries)}
    return [{"type": "value", "options": options}]


STATUS_MAPPINGS = _value_mappings(
    ("healthy", "green"), ("degraded", "orange"), ("unhealthy", "red"), ("unknown", "purple")
)
LEVEL_MAPPINGS = _value_mappings(
    ("full", "green"), ("degraded", "yellow"), ("minimal", "orange"), ("maintenance", "blue")
)
BINARY_MAPPINGS = _value_mappings(("no", "green"), ("yes", "orange"))


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass(frozen=True)
class Link:
    """A panel link to a runbook section."""

    title: str
    url: str


@dataclass(frozen=True)
class Panel:
    """A panel: what it shows (type, targets, unit) and how it reads (description, links)."""

    title: str
    description: str
    type: str
    unit: str
    targets: Sequence[Target]
    width: int = 12
    height: int = 8
    links: Sequence[Link] = ()
    mappings: Sequence[Json] = ()
    thresholds: Sequence[tuple[str, float | None]] = (("green", None),)
    stepped: bool = False
    stacked: bool = False
    minimum: float | None = None
    maximum: float | None = None
    hidden_columns: Sequence[str] = ()
    color_columns: Sequence[str] = ()
    value_column: str = "value"

    def render(self, panel_id: int, x: int, y: int) -> Json:
        """The panel's JSON model at grid position (x, y)."""
        defaults: Json = {
            "unit": self.unit,
            "mappings": list(self.mappings),
            "thresholds": {
                "mode": "absolute",
                "steps": [{"color": c, "value": v} for c, v in self.thresholds],
            },
            "color": {
                "mode": "thresholds"
                if self.type in ("stat", "state-timeline")
                else "palette-classic"
            },
            "custom": self._custom(),
        }
        if self.minimum is not None:
            defaults["min"] = self.minimum
        if self.maximum is not None:
            defaults["max"] = self.maximum
        panel: Json = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": dict(DATASOURCE),
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": self._overrides()},
            "options": self._options(),
            "targets": [self._target(t, i) for i, t in enumerate(self.targets)],
            "links": [{"title": ln.title, "url": ln.url, "targetBlank": True} for ln in self.links],
        }
        if self.type == "table":
            hidden = ("Time", "__name__", *self.hidden_columns)
            panel["transformations"] = [
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": dict.fromkeys(hidden, True),
                        "renameByName": {"Value": self.value_column},
                    },
                }
            ]
        return panel

    def _target(self, target: Target, index: int) -> Json:
        out: Json = {
            "datasource": dict(DATASOURCE),
            "editorMode": "code",
            "expr": target.expr,
            "legendFormat": target.legend or "__auto",
            "refId": chr(ord("A") + index),
            "range": not target.instant,
            "instant": target.instant,
        }
        if target.table:
            out["format"] = "table"
        return out

    def _custom(self) -> Json:
        if self.type == "timeseries":
            return {
                "drawStyle": "line",
                "lineInterpolation": "stepAfter" if self.stepped else "linear",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if self.stacked else "none", "group": "A"},
            }
        if self.type == "state-timeline":
            return {"lineWidth": 0, "fillOpacity": 80}
        if self.type == "table":
            return {"align": "auto", "cellOptions": {"type": "auto"}}
        return {}

    def _overrides(self) -> list[Json]:
        return [
            {
                "matcher": {"id": "byName", "options": column},
                "properties": [
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                    {"id": "mappings", "value": COLUMN_MAPPINGS.get(column, [])},
                ],
            }
            for column in self.color_columns
        ]

    def _options(self) -> Json:
        if self.type == "stat":
            return {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "background",
                "graphMode": "none",
                "justifyMode": "auto",
                "orientation": "auto",
                "textMode": "auto",
            }
        if self.type == "state-timeline":
            return {
                "mergeValues": True,
                "showValue": "auto",
                "alignValue": "left",
                "rowHeight": 0.9,
                "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
                "tooltip": {"mode": "single", "sort": "none"},
            }
        if self.type == "table":
            return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
        return {
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }


COLUMN_MAPPINGS: dict[str, list[Json]] = {
    "state": [
        {
            "type": "value",
            "options": {
                "healthy": {"color": "green", "index": 0},
                "degraded": {"color": "orange", "index": 1},
                "unhealthy": {"color": "red", "index": 2},
                "unknown": {"color": "purple", "index": 3},
            },
        }
    ],
}


@dataclass(frozen=True)
class Annotation:
    """A Prometheus annotation query (one event per step where ``expr`` returns a sample)."""

    name: str
    expr: str
    title: str
    text: str
    color: str = "orange"


@dataclass
class Dashboard:
    """A dashboard: rows of panels laid out left to right, plus its variables and links."""

    uid: str
    title: str
    description: str
    rows: list[list[Panel]]
    annotations: list[Annotation] = field(default_factory=list)
    extra_variables: list[Json] = field(default_factory=list)

    def render(self) -> Json:
        """The complete classic JSON model, ready for file provisioning."""
        panels: list[Json] = []
        y = 0
        for row in self.rows:
            x = 0
            height = 0
            for panel in row:
                if x + panel.width > GRID_WIDTH:
                    raise ValueError(f"{self.uid}: row overflows at {panel.title!r}")
                panels.append(panel.render(len(panels) + 1, x, y))
                x += panel.width
                height = max(height, panel.height)
            y += height
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": TAGS,
            "timezone": "browser",
            "editable": False,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "links": [
                {
                    "title": "Runbooks",
                    "type": "link",
                    "url": runbook("README.md"),
                    "icon": "doc",
                    "tooltip": "Vigil runbooks: one section per alert",
                    "targetBlank": True,
                    "asDropdown": False,
                    "includeVars": False,
                    "keepTime": False,
                    "tags": [],
                },
                {
                    "title": "Vigil dashboards",
                    "type": "dashboards",
                    "tags": TAGS,
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                    "targetBlank": False,
                    "icon": "external link",
                    "tooltip": "",
                    "url": "",
                },
            ],
            "annotations": {
                "list": [BUILTIN_ANNOTATION, *(_annotation(a) for a in self.annotations)]
            },
            "templating": {"list": [*VARIABLES, *self.extra_variables]},
            "panels": panels,
        }


BUILTIN_ANNOTATION: Json = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def _annotation(annotation: Annotation) -> Json:
    return {
        "datasource": dict(DATASOURCE),
        "enable": True,
        "hide": False,
        "iconColor": annotation.color,
        "name": annotation.name,
        "expr": annotation.expr,
        "step": "$__interval",
        "titleFormat": annotation.title,
        "textFormat": annotation.text,
        "tagKeys": "job,instance",
        "useValueForTime": False,
    }


def _query_variable(name: str, label: str, query: str) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": dict(DATASOURCE),
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,  # on time range change
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


VARIABLES: list[Json] = [
    {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "current": {},
        "options": [],
        "hide": 0,
        "multi": False,
        "includeAll": False,
    },
    _query_variable("job", "Job", "label_values(vigil_agent_info, job)"),
    _query_variable(
        "instance", "Instance", 'label_values(vigil_agent_info{job=~"$job"}, instance)'
    ),
    {
        "name": "runbook_base",
        "label": "Runbook base URL",
        "type": "textbox",
        "query": RUNBOOK_BASE_DEFAULT,
        "current": {"text": RUNBOOK_BASE_DEFAULT, "value": RUNBOOK_BASE_DEFAULT},
        "options": [
            {"selected": True, "text": RUNBOOK_BASE_DEFAULT, "value": RUNBOOK_BASE_DEFAULT}
        ],
        "hide": 2,
        "description": "Where docs/runbooks is published; override with ?var-runbook_base=...",
    },
]

TRANSITIONS = Annotation(
    name="Degradation transitions",
    expr=f"changes({sel('vigil_degradation_level_index')}[$__interval]) > 0",
    title="Degradation level changed",
    text="{{instance}}: level index changed (see the transitions panel for from/to/cause)",
)

# ---------------------------------------------------------------------------------------------
# Panels shared by several dashboards.

LEVEL_NOW = Panel(
    "Degradation level",
    "Effective degradation level the agent enforces now (full, degraded, minimal, maintenance).",
    "stat",
    "none",
    [Target(f"max by (instance) ({sel('vigil_degradation_level_index')})", "{{instance}}")],
    width=6,
    height=5,
    mappings=LEVEL_MAPPINGS,
    links=[
        Link(
            "Runbook: minimal or worse", runbook("degradation.md", "vigildegradationminimalorworse")
        )
    ],
)
LEVEL_OVER_TIME = Panel(
    "Degradation level over time",
    "Effective level per agent; transitions are annotated (changes of the level index).",
    "state-timeline",
    "none",
    [Target(f"max by (instance) ({sel('vigil_degradation_level_index')})", "{{instance}}")],
    width=24,
    height=6,
    mappings=LEVEL_MAPPINGS,
    links=[Link("Runbook: degradation", runbook("degradation.md"))],
)
ALERTS_ACTIVE = Panel(
    "Active alerts (agent view)",
    "Alerts the degradation engine currently holds as firing (from Alertmanager's webhook).",
    "stat",
    "short",
    [Target(f"sum by (instance) ({sel('vigil_degradation_alerts_active')})", "{{instance}}")],
    width=6,
    height=5,
    thresholds=(("green", None), ("orange", 1)),
)
FLAGS_OFF = Panel(
    "Flags switched off by degradation",
    "Flags a degradation rule switched off because a matching alert is firing (1 = off).",
    "table",
    "none",
    [Target(f"{sel('vigil_degradation_flags_off')} == 1", instant=True, table=True)],
    width=12,
    height=6,
    hidden_columns=("job",),
    links=[Link("Runbook: degradation", runbook("degradation.md"))],
)
TRANSITIONS_BY_CAUSE = Panel(
    "Level transitions by cause",
    "Level transitions per $__rate_interval, by from, to and cause (why the level moved).",
    "timeseries",
    "short",
    [
        Target(
            "sum by (from, to, cause) "
            f"(increase({sel('vigil_degradation_transitions_total')}[$__rate_interval]))",
            "{{from}} → {{to}} ({{cause}})",
        )
    ],
    width=12,
    height=6,
    stepped=True,
)

# ---------------------------------------------------------------------------------------------

OVERVIEW = Dashboard(
    "vigil-overview",
    "Vigil / Overview",
    "Overall and per-check status, degradation level and the alerts the agent acts on.",
    rows=[
        [
            Panel(
                "Overall status",
                "Overall status of each agent: healthy, degraded, unhealthy or unknown.",
                "stat",
                "none",
                [Target(state_index("vigil_health_status", "instance"), "{{instance}}")],
                width=6,
                height=5,
                mappings=STATUS_MAPPINGS,
                links=[
                    Link("Runbook: health degraded", runbook("checks.md", "vigilhealthdegraded"))
                ],
            ),
            Panel(
                "Unhealthy checks",
                "Checks whose current status is unhealthy (critical or not).",
                "stat",
                "short",
                [Target("sum(" + sel("vigil_check_status", 'state="unhealthy"') + ")")],
                width=6,
                height=5,
                thresholds=(("green", None), ("red", 1)),
                links=[
                    Link(
                        "Runbook: critical check unhealthy",
                        runbook("checks.md", "vigilcriticalcheckunhealthy"),
                    )
                ],
            ),
            LEVEL_NOW,
            ALERTS_ACTIVE,
        ],
        [
            Panel(
                "Check status",
                "Current status of every check (one row per check and agent).",
                "table",
                "none",
                [Target(f"{sel('vigil_check_status')} == 1", instant=True, table=True)],
                width=12,
                height=8,
                hidden_columns=("job", "Value"),
                color_columns=("state",),
                links=[Link("Runbook: checks", runbook("checks.md"))],
            ),
            Panel(
                "Check status over time",
                "Status of every check over time (0 healthy, 1 degraded, 2 unhealthy, 3 unknown).",
                "state-timeline",
                "none",
                [
                    Target(
                        state_index("vigil_check_status", "instance, check"),
                        "{{check}} ({{instance}})",
                    )
                ],
                width=12,
                height=8,
                mappings=STATUS_MAPPINGS,
                links=[Link("Runbook: checks", runbook("checks.md"))],
            ),
        ],
        [LEVEL_OVER_TIME],
        [FLAGS_OFF, TRANSITIONS_BY_CAUSE],
        [
            Panel(
                "Agents",
                "Agents by version, and how long each has been up.",
                "table",
                "s",
                [
                    Target(
                        f"time() - {sel('vigil_agent_start_timestamp_seconds')}",
                        instant=True,
                        table=True,
                    )
                ],
                width=12,
                height=5,
                hidden_columns=("job",),
                value_column="uptime",
                links=[Link("Runbook: agent down", runbook("agent.md", "vigilagentdown"))],
            ),
            Panel(
                "Agent versions",
                "Agents per version (vigil_agent_info).",
                "stat",
                "short",
                [Target(f"count by (version) ({sel('vigil_agent_info')})", "{{version}}")],
                width=12,
                height=5,
            ),
        ],
    ],
    annotations=[TRANSITIONS],
)

CHECKS = Dashboard(
    "vigil-checks",
    "Vigil / Checks",
    "Check latency, failures by reason, run rates, staleness and per-kind saturation.",
    rows=[
        [
            Panel(
                "Check latency p50",
                "Median check duration per check over $__rate_interval.",
                "timeseries",
                "s",
                [
                    Target(
                        "histogram_quantile(0.5, sum by (check, le) "
                        f"(rate({sel('vigil_check_duration_seconds_bucket')}[$__rate_interval])))",
                        "{{check}}",
                    )
                ],
                links=[
                    Link("Runbook: timeouts", runbook("checks.md", "vigilchecktimeoutsincreasing"))
                ],
            ),
            Panel(
                "Check latency p99",
                "99th percentile check duration per check over $__rate_interval.",
                "timeseries",
                "s",
                [
                    Target(
                        "histogram_quantile(0.99, sum by (check, le) "
                        f"(rate({sel('vigil_check_duration_seconds_bucket')}[$__rate_interval])))",
                        "{{check}}",
                    )
                ],
                links=[
                    Link("Runbook: timeouts", runbook("checks.md", "vigilchecktimeoutsincreasing"))
                ],
            ),
        ],
        [
            Panel(
                "Failures by reason",
                "Failed (unhealthy or unknown) runs per second by check and reason.",
                "timeseries",
                "ops",
                [
                    Target(
                        "sum by (check, reason) "
                        f"(rate({sel('vigil_check_failures_total')}[$__rate_interval]))",
                        "{{check}}: {{reason}}",
                    )
                ],
                stacked=True,
                links=[
                    Link(
                        "Runbook: critical check unhealthy",
                        runbook("checks.md", "vigilcriticalcheckunhealthy"),
                    )
                ],
            ),
            Panel(
                "Runs by outcome",
                "Check runs per second by outcome (the status each run produced).",
                "timeseries",
                "ops",
                [
                    Target(
                        "sum by (outcome) "
                        f"(rate({sel('vigil_check_runs_total')}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                stacked=True,
            ),
        ],
        [
            Panel(
                "Time since last run",
                "Seconds since each check last finished; compare with its interval.",
                "timeseries",
                "s",
                [
                    Target(
                        f"time() - {sel('vigil_check_last_run_timestamp_seconds')}",
                        "{{check}}",
                    )
                ],
                width=8,
                links=[Link("Runbook: check stale", runbook("checks.md", "vigilcheckstale"))],
            ),
            Panel(
                "Checks in flight",
                "Check runs executing now.",
                "timeseries",
                "short",
                [Target(f"sum by (instance) ({sel('vigil_checks_in_flight')})", "{{instance}}")],
                width=8,
            ),
            Panel(
                "Abandoned runs",
                "Runs that ignored cancellation after their timeout, per second, by check.",
                "timeseries",
                "ops",
                [
                    Target(
                        "sum by (check) "
                        f"(rate({sel('vigil_checks_abandoned_total')}[$__rate_interval]))",
                        "{{check}}",
                    )
                ],
                width=8,
                links=[
                    Link("Runbook: timeouts", runbook("checks.md", "vigilchecktimeoutsincreasing"))
                ],
            ),
        ],
        [
            Panel(
                "PostgreSQL connections used",
                "Connections in use as a fraction of max_connections, per postgres check.",
                "timeseries",
                "percentunit",
                [
                    Target(
                        f"{sel('vigil_postgres_connections_used')} / "
                        f"({sel('vigil_postgres_connections_max')} > 0)",
                        "{{check}}",
                    )
                ],
                width=8,
                thresholds=(("green", None), ("orange", 0.8), ("red", 0.9)),
                minimum=0,
                maximum=1,
                links=[
                    Link("Runbook: checks", runbook("checks.md", "vigilcriticalcheckunhealthy"))
                ],
            ),
            Panel(
                "Redis memory used",
                "used_memory as a fraction of maxmemory, per redis check (no limit: no line).",
                "timeseries",
                "percentunit",
                [
                    Target(
                        f"{sel('vigil_redis_memory_used_bytes')} / "
                        f"({sel('vigil_redis_memory_max_bytes')} > 0)",
                        "{{check}}",
                    )
                ],
                width=8,
                thresholds=(("green", None), ("orange", 0.8), ("red", 0.9)),
                minimum=0,
                maximum=1,
                links=[
                    Link("Runbook: checks", runbook("checks.md", "vigilcriticalcheckunhealthy"))
                ],
            ),
            Panel(
                "Disk free",
                "Free space as a fraction of the filesystem, per disk check.",
                "timeseries",
                "percentunit",
                [Target(sel("vigil_disk_free_ratio"), "{{check}}")],
                width=8,
                thresholds=(("red", None), ("orange", 0.1), ("green", 0.2)),
                minimum=0,
                maximum=1,
                links=[
                    Link("Runbook: disk space low", runbook("checks.md", "vigildiskspacelow")),
                    Link(
                        "Runbook: disk space critical",
                        runbook("checks.md", "vigildiskspacecritical"),
                    ),
                ],
            ),
        ],
        [
            Panel(
                "TLS certificate expiry",
                "Time left until each https check's certificate expires.",
                "timeseries",
                "s",
                [
                    Target(
                        f"{sel('vigil_tls_cert_expiry_timestamp_seconds')} - time()",
                        "{{check}}",
                    )
                ],
                thresholds=(("red", None), ("orange", 7 * 86400), ("green", 14 * 86400)),
                links=[
                    Link(
                        "Runbook: certificate expiring",
                        runbook("checks.md", "vigilcertificateexpiringsoon"),
                    )
                ],
            ),
            Panel(
                "HTTP status code",
                "Last HTTP status code seen by each http check.",
                "timeseries",
                "none",
                [Target(sel("vigil_http_status_code"), "{{check}}")],
                stepped=True,
            ),
        ],
    ],
)

DEGRADATION = Dashboard(
    "vigil-degradation",
    "Vigil / Degradation and flags",
    "Degradation level, transitions, pins, webhook and reconcile health, and flag evaluations.",
    rows=[
        [
            LEVEL_NOW,
            ALERTS_ACTIVE,
            Panel(
                "Pinned",
                "Whether a manual pin sets the level (yes) or the alerts do (no).",
                "stat",
                "none",
                [Target(f"max by (instance) ({sel('vigil_degradation_pinned')})", "{{instance}}")],
                width=6,
                height=5,
                mappings=BINARY_MAPPINGS,
                links=[
                    Link(
                        "Runbook: pinned too long",
                        runbook("degradation.md", "vigildegradationpinnedtoolong"),
                    )
                ],
            ),
            Panel(
                "Pin age",
                "How long the current pin has been in place (no value when not pinned).",
                "stat",
                "s",
                [
                    Target(
                        f"time() - {sel('vigil_degradation_pin_set_timestamp_seconds')}",
                        "{{instance}}",
                    )
                ],
                width=6,
                height=5,
                thresholds=(("green", None), ("orange", 4 * 3600)),
                links=[
                    Link(
                        "Runbook: pinned too long",
                        runbook("degradation.md", "vigildegradationpinnedtoolong"),
                    )
                ],
            ),
        ],
        [LEVEL_OVER_TIME],
        [TRANSITIONS_BY_CAUSE, FLAGS_OFF],
        [
            Panel(
                "Suppressed recoveries",
                "Recoveries held back per $__rate_interval, by reason (hold, flap).",
                "timeseries",
                "short",
                [
                    Target(
                        "sum by (reason) "
                        f"(increase({sel('vigil_degradation_suppressed_total')}[$__rate_interval]))",
                        "{{reason}}",
                    )
                ],
                width=8,
            ),
            Panel(
                "Webhook requests by outcome",
                "Alertmanager webhook requests per second by outcome (anything but accepted is a "
                "refusal).",
                "timeseries",
                "reqps",
                [
                    Target(
                        "sum by (outcome) (rate("
                        f"{sel('vigil_degradation_webhook_requests_total')}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                width=8,
                links=[
                    Link(
                        "Runbook: webhook failing",
                        runbook("degradation.md", "vigildegradationwebhookfailing"),
                    )
                ],
            ),
            Panel(
                "State staleness",
                "Seconds the engine's state has not been confirmed by its shared store.",
                "timeseries",
                "s",
                [Target(sel("vigil_degradation_state_staleness_seconds"), "{{instance}}")],
                width=8,
                thresholds=(("green", None), ("red", 120)),
                links=[
                    Link(
                        "Runbook: state stale",
                        runbook("degradation.md", "vigildegradationstatestale"),
                    )
                ],
            ),
        ],
        [
            Panel(
                "Active alerts over time",
                "Alerts the degradation engine holds as firing.",
                "timeseries",
                "short",
                [Target(sel("vigil_degradation_alerts_active"), "{{instance}}")],
                width=8,
                stepped=True,
            ),
            Panel(
                "Reconcile polls by outcome",
                "Polls of Alertmanager's alert list per second by outcome.",
                "timeseries",
                "ops",
                [
                    Target(
                        "sum by (outcome) (rate("
                        f"{sel('vigil_degradation_reconcile_runs_total')}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                width=8,
                links=[Link("Runbook: degradation", runbook("degradation.md"))],
            ),
            Panel(
                "Flag evaluations by flag and reason",
                "Flag evaluations per second by flag and by the reason for the answer.",
                "timeseries",
                "ops",
                [
                    Target(
                        "sum by (flag, reason) "
                        f"(rate({sel('vigil_flags_evaluations_total')}[$__rate_interval]))",
                        "{{flag}}: {{reason}}",
                    )
                ],
                width=8,
            ),
        ],
    ],
    annotations=[TRANSITIONS],
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, CHECKS, DEGRADATION)


def render(dashboard: Dashboard) -> str:
    """The file content for ``dashboard``: sorted-key, two-space JSON with a final newline."""
    return json.dumps(dashboard.render(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build(out_dir: Path = OUT_DIR) -> dict[Path, str]:
    """Every dashboard file this module generates, by path."""
    return {out_dir / f"{d.uid}.json": render(d) for d in DASHBOARDS}


def stale(files: dict[Path, str]) -> list[Path]:
    """The paths whose committed content differs from ``files`` (or that are missing)."""
    return [p for p, text in files.items() if not p.exists() or p.read_text() != text]


def main(argv: Iterable[str] | None = None) -> int:
    """Write the dashboards, or with ``--check`` report the stale ones and return 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if committed JSON is stale")
    args = parser.parse_args(list(argv) if argv is not None else None)
    files = build()
    outdated = stale(files)
    if args.check:
        for path in outdated:
            print(f"stale: {path} (run: python grafana/build.py)", file=sys.stderr)
        return 1 if outdated else 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for path in outdated:
        path.write_text(files[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
