"""The limits dashboard: external queues the queue checks watch (rate limits and the work queue
get their own sections later)."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.frame import dashboard, section
from grafana.panels import AnyPanel, runbook_link, thresholds, timeseries_panel
from grafana.queries import sel

NEAR_CAPACITY = "limits.md#vigilexternalqueuenearcapacity"
LAG_GROWING = "limits.md#vigilexternalqueuelaggrowing"


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


def build() -> Dashboard:
    """Vigil / Queues and rate limits."""
    return dashboard(
        "vigil-limits",
        "Vigil / Queues and rate limits",
        "External job queues watched by the queue checks: depth against capacity, the oldest "
        "item's age, a stream group's pending entries and lag.",
        external_queues(),
    )
