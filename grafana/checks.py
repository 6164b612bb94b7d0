"""The checks dashboard: latency, failures, run rates, staleness and per-kind saturation."""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models.common import LineInterpolation, StackingMode
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.frame import dashboard
from grafana.panels import runbook_link, stacking, thresholds, timeseries_panel
from grafana.queries import rate_by, sel

DAY_SECONDS = 86400


def _latency(percentile: int, what: str) -> timeseries.Panel:
    return timeseries_panel(
        f"Check latency p{percentile}",
        f"{what} check duration per check over $__rate_interval.",
        "s",
        f"histogram_quantile({percentile / 100}, "
        f"{rate_by('vigil_check_duration_seconds_bucket', 'check, le')})",
        legend="{{check}}",
    ).links([runbook_link("timeouts", "checks.md#vigilchecktimeoutsincreasing")])


def _runs() -> list[timeseries.Panel]:
    failures = (
        timeseries_panel(
            "Failures by reason",
            "Failed (unhealthy or unknown) runs per second by check and reason.",
            "ops",
            rate_by("vigil_check_failures_total", "check, reason"),
            legend="{{check}}: {{reason}}",
        )
        .stacking(stacking(StackingMode.NORMAL))
        .links([runbook_link("critical check unhealthy", "checks.md#vigilcriticalcheckunhealthy")])
    )
    outcomes = timeseries_panel(
        "Runs by outcome",
        "Check runs per second by outcome (the status each run produced).",
        "ops",
        rate_by("vigil_check_runs_total", "outcome"),
        legend="{{outcome}}",
    ).stacking(stacking(StackingMode.NORMAL))
    return [failures, outcomes]


def _scheduling() -> list[timeseries.Panel]:
    since_last = timeseries_panel(
        "Time since last run",
        "Seconds since each check last finished; compare with its interval.",
        "s",
        f"time() - {sel('vigil_check_last_run_timestamp_seconds')}",
        legend="{{check}}",
        span=8,
    ).links([runbook_link("check stale", "checks.md#vigilcheckstale")])
    in_flight = timeseries_panel(
        "Checks in flight",
        "Check runs executing now.",
        "short",
        f"sum by (instance) ({sel('vigil_checks_in_flight')})",
        legend="{{instance}}",
        span=8,
    )
    abandoned = timeseries_panel(
        "Abandoned runs",
        "Runs that ignored cancellation after their timeout, per second, by check.",
        "ops",
        rate_by("vigil_checks_abandoned_total", "check"),
        legend="{{check}}",
        span=8,
    ).links([runbook_link("timeouts", "checks.md#vigilchecktimeoutsincreasing")])
    return [since_last, in_flight, abandoned]


def _ratio(title: str, description: str, expr: str) -> timeseries.Panel:
    """A 0-1 ratio per check, orange from 80 % and red from 90 %."""
    return (
        timeseries_panel(title, description, "percentunit", expr, legend="{{check}}", span=8)
        .thresholds(thresholds(("green", None), ("orange", 0.8), ("red", 0.9)))
        .min(0)
        .max(1)
        .links([runbook_link("checks", "checks.md#vigilcriticalcheckunhealthy")])
    )


def _saturation() -> list[timeseries.Panel]:
    postgres = _ratio(
        "PostgreSQL connections used",
        "Connections in use as a fraction of max_connections, per postgres check.",
        f"{sel('vigil_postgres_connections_used')} / ({sel('vigil_postgres_connections_max')} > 0)",
    )
    redis = _ratio(
        "Redis memory used",
        "used_memory as a fraction of maxmemory, per redis check (no limit: no line).",
        f"{sel('vigil_redis_memory_used_bytes')} / ({sel('vigil_redis_memory_max_bytes')} > 0)",
    )
    disk = (
        timeseries_panel(
            "Disk free",
            "Free space as a fraction of the filesystem, per disk check.",
            "percentunit",
            sel("vigil_disk_free_ratio"),
            legend="{{check}}",
            span=8,
        )
        .thresholds(thresholds(("red", None), ("orange", 0.1), ("green", 0.2)))
        .min(0)
        .max(1)
        .links(
            [
                runbook_link("disk space low", "checks.md#vigildiskspacelow"),
                runbook_link("disk space critical", "checks.md#vigildiskspacecritical"),
            ]
        )
    )
    return [postgres, redis, disk]


def _endpoints() -> list[timeseries.Panel]:
    expiry = (
        timeseries_panel(
            "TLS certificate expiry",
            "Time left until each https check's certificate expires.",
            "s",
            f"{sel('vigil_tls_cert_expiry_timestamp_seconds')} - time()",
            legend="{{check}}",
        )
        .thresholds(
            thresholds(("red", None), ("orange", 7 * DAY_SECONDS), ("green", 14 * DAY_SECONDS))
        )
        .links([runbook_link("certificate expiring", "checks.md#vigilcertificateexpiringsoon")])
    )
    status_code = timeseries_panel(
        "HTTP status code",
        "Last HTTP status code seen by each http check.",
        "none",
        sel("vigil_http_status_code"),
        legend="{{check}}",
    ).line_interpolation(LineInterpolation.STEP_AFTER)
    return [expiry, status_code]


def build() -> Dashboard:
    """Vigil / Checks."""
    return dashboard(
        "vigil-checks",
        "Vigil / Checks",
        "Check latency, failures by reason, run rates, staleness and per-kind saturation.",
        [
            [_latency(50, "Median"), _latency(99, "99th percentile")],
            _runs(),
            _scheduling(),
            _saturation(),
            _endpoints(),
        ],
    )
