"""The limits dashboard: external queues the queue checks watch, and the rate limiters."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.frame import dashboard, section
from grafana.panels import AnyPanel, runbook_link, thresholds, timeseries_panel
from grafana.queries import rate_by, sel

NEAR_CAPACITY = "limits.md#vigilexternalqueuenearcapacity"
LAG_GROWING = "limits.md#vigilexternalqueuelaggrowing"
NEAR_QUOTA = "limits.md#vigilratelimitnearquota"
REJECTING = "limits.md#vigilratelimitrejectingmany"
STORAGE_FAILING = "limits.md#vigilratelimitstoragefailing"
QUEUE_NEAR_CAPACITY = "limits.md#vigilworkqueuenearcapacity"
BACKPRESSURE = "limits.md#vigilbackpressureactive"
JOBS_FAILING = "limits.md#vigilworkqueuejobsfailing"
JOBS_EXPIRING = "limits.md#vigilworkqueuejobsexpiring"


def _depth() -> timeseries.Panel:
    return (
        timeseries_panel(
            "Queue depth vs capacity",
            "Items waiting as a fraction of each queue check's configured capacity (a stream "
            "group: pending plus lag). The alert fires above 80 % for 10 minutes.",
            "percentunit",
            f"{sel('vigil_external_queue_depth')} / {sel('vigil_external_queue_capacity')}",
            legend="{{check}}",
        )
        .thresholds(thresholds(("green", None), ("orange", 0.8), ("red", 1.0)))
        .min(0)
        .links([runbook_link("queue near capacity", NEAR_CAPACITY)])
    )


def _age() -> timeseries.Panel:
    return (
        timeseries_panel(
            "Oldest waiting item",
            "How long the oldest waiting item of each stream or table queue has waited (0 when "
            "empty). A line rising with the clock means nothing is consumed.",
            "s",
            sel("vigil_external_queue_oldest_age_seconds"),
            legend="{{check}}",
        )
        .thresholds(thresholds(("green", None), ("orange", 300)))
        .min(0)
        .links([runbook_link("queue lag growing", LAG_GROWING)])
    )


def _stream(title: str, description: str, metric: str) -> timeseries.Panel:
    return (
        timeseries_panel(title, description, "short", sel(metric), legend="{{check}}")
        .min(0)
        .links([runbook_link("queue near capacity", NEAR_CAPACITY)])
    )


def external_queues() -> list[Sequence[AnyPanel] | builders.Row]:
    """The "External queues" section: depth against capacity, oldest age, a stream's backlog."""
    pending = _stream(
        "Stream entries pending",
        "Entries delivered to a stream's consumer group and not acknowledged yet: taken by a "
        "consumer that has not finished (or died) with them.",
        "vigil_external_queue_pending",
    )
    lag = _stream(
        "Stream entries not delivered (lag)",
        "Entries a stream's consumer group has not been handed yet: waiting for a consumer.",
        "vigil_external_queue_lag",
    )
    return [section("External queues"), [_depth(), _age()], [pending, lag]]


def rate_limits() -> list[Sequence[AnyPanel] | builders.Row]:
    """The "Rate limits" section: decisions by outcome, utilization, storage errors, throttling."""
    decisions = (
        timeseries_panel(
            "Decisions by outcome",
            "Rate-limit decisions per second by limiter and outcome: allowed, denied, never (a "
            "cost above the burst), fail_open / fail_closed (the storage failed and the failure "
            "policy decided).",
            "reqps",
            rate_by("vigil_ratelimit_decisions_total", "limiter, outcome"),
            legend="{{limiter}} {{outcome}}",
        )
        .min(0)
        .links([runbook_link("rejecting many", REJECTING)])
    )
    refusals = 'outcome=~"denied|never|fail_closed"'
    refused = (
        timeseries_panel(
            "Refused share",
            "Share of each limiter's decisions refused (denied, never, fail_closed). The alert "
            "fires above 10 % for 10 minutes at one decision per second or more.",
            "percentunit",
            f"sum by (limiter) (rate({sel('vigil_ratelimit_decisions_total', refusals)}"
            "[$__rate_interval])) / sum by (limiter) "
            f"(rate({sel('vigil_ratelimit_decisions_total')}[$__rate_interval]))",
            legend="{{limiter}}",
        )
        .thresholds(thresholds(("green", None), ("orange", 0.1)))
        .min(0)
        .links([runbook_link("rejecting many", REJECTING)])
    )
    utilization = (
        timeseries_panel(
            "Busiest key's quota used",
            "Peak share of any key's quota used, per limiter. Above 90 % for 15 minutes a "
            "client lives at its limit.",
            "percentunit",
            sel("vigil_ratelimit_utilization"),
            legend="{{limiter}}",
            span=8,
        )
        .thresholds(thresholds(("green", None), ("orange", 0.9)))
        .min(0)
        .max(1)
        .links([runbook_link("near quota", NEAR_QUOTA)])
    )
    storage = (
        timeseries_panel(
            "Storage errors",
            "Decisions per second the limiter's storage (Redis) failed to make; each was "
            "answered by the failure policy (fail_open or fail_closed above).",
            "short",
            rate_by("vigil_ratelimit_storage_errors_total", "limiter"),
            legend="{{limiter}}",
            span=8,
        )
        .min(0)
        .links([runbook_link("storage failing", STORAGE_FAILING)])
    )
    factor = (
        timeseries_panel(
            "Throttling factor",
            "The factor on each limiter's configured rates: 1 as configured, lower while a "
            "throttle scales the rates down (load, degradation level).",
            "percentunit",
            sel("vigil_ratelimit_factor"),
            legend="{{limiter}}",
            span=8,
        )
        .min(0)
        .max(1)
        .links([runbook_link("near quota", NEAR_QUOTA)])
    )
    return [section("Rate limits"), [decisions, refused], [utilization, storage, factor]]


def _quantile(metric: str) -> str:
    """The 95th percentile of a queue histogram, per queue."""
    return (
        f"histogram_quantile(0.95, sum by (queue, le) (rate({sel(metric + '_bucket')}"
        "[$__rate_interval])))"
    )


def work_queues() -> list[Sequence[AnyPanel] | builders.Row]:
    """The "Work queues" section: depth, backpressure, outcomes, waits, processing, workers."""
    depth = (
        timeseries_panel(
            "Depth vs capacity",
            "Jobs waiting in each work queue as a share of its capacity (the agent's own: "
            "queue=webhook). The alert fires above 80 % for 5 minutes.",
            "percentunit",
            f"{sel('vigil_queue_depth')} / {sel('vigil_queue_capacity')}",
            legend="{{queue}}",
            span=8,
        )
        .thresholds(thresholds(("green", None), ("orange", 0.8), ("red", 1.0)))
        .min(0)
        .links([runbook_link("queue near capacity", QUEUE_NEAR_CAPACITY)])
    )
    backpressure = (
        timeseries_panel(
            "Backpressure",
            "1 while a queue refuses or holds back producers (its depth or wait reached the "
            "high watermark and has not fallen below the low one).",
            "short",
            sel("vigil_backpressure_active"),
            legend="{{queue}}",
            span=8,
        )
        .min(0)
        .max(1)
        .links([runbook_link("backpressure", BACKPRESSURE)])
    )
    workers = (
        timeseries_panel(
            "Workers",
            "Workers of each queue: the pool grows with the depth up to max_workers and "
            "shrinks when workers stay idle.",
            "short",
            sel("vigil_queue_workers"),
            legend="{{queue}}",
            span=8,
        )
        .min(0)
        .links([runbook_link("queue near capacity", QUEUE_NEAR_CAPACITY)])
    )
    outcomes = (
        timeseries_panel(
            "Jobs by outcome",
            "Jobs per second by outcome: completed, failed (raised or cut off at the deadline), "
            "expired (never ran), rejected (refused at submission), retried, cancelled.",
            "ops",
            rate_by("vigil_queue_items_total", "queue, outcome"),
            legend="{{queue}} {{outcome}}",
            span=8,
        )
        .min(0)
        .links(
            [
                runbook_link("jobs failing", JOBS_FAILING),
                runbook_link("jobs expiring", JOBS_EXPIRING),
            ]
        )
    )
    wait = (
        timeseries_panel(
            "Wait, 95th percentile",
            "How long jobs waited for a worker. Waits near the deadline end in expiries.",
            "s",
            _quantile("vigil_queue_wait_seconds"),
            legend="{{queue}}",
            span=8,
        )
        .min(0)
        .links([runbook_link("jobs expiring", JOBS_EXPIRING)])
    )
    processing = (
        timeseries_panel(
            "Processing, 95th percentile",
            "How long job attempts ran.",
            "s",
            _quantile("vigil_queue_processing_seconds"),
            legend="{{queue}}",
            span=8,
        )
        .min(0)
        .links([runbook_link("jobs failing", JOBS_FAILING)])
    )
    return [section("Work queues"), [depth, backpressure, workers], [outcomes, wait, processing]]


def build() -> Dashboard:
    """Vigil / Queues and rate limits."""
    return dashboard(
        "vigil-limits",
        "Vigil / Queues and rate limits",
        "External job queues watched by the queue checks: depth against capacity, the oldest "
        "item's age, a stream group's pending entries and lag; and the rate limiters: decisions "
        "by outcome, the busiest key's quota, storage errors and throttling; and the work "
        "queues: depth, backpressure, outcomes, waits and workers.",
        [*external_queues(), *rate_limits(), *work_queues()],
    )
