"""How the queue kinds rate a backlog: depth against capacity, the oldest item's age, by table and
by the properties that hold for any thresholds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.checks import RedisListCheck, RedisStreamCheck
from agent.probes.backlog import judge
from agent.probes.result import Reason, Status


def _stream(**limits: Any) -> RedisStreamCheck:
    return RedisStreamCheck(name="q", kind="redis_stream", stream="s", group="g", **limits)


def _list(**limits: Any) -> RedisListCheck:
    return RedisListCheck(name="q", kind="redis_list", keys=["celery"], **limits)


STREAM = _stream(capacity=100, degraded_age_seconds=60, unhealthy_age_seconds=600)


@pytest.mark.parametrize(
    ("depth", "age", "status", "reason", "message"),
    [
        (0, None, Status.HEALTHY, None, ""),
        (79, 59.9, Status.HEALTHY, None, ""),
        (80, None, Status.DEGRADED, Reason.SATURATION, "80 of 100 items queued (80%)"),
        (1, 60, Status.DEGRADED, Reason.LATENCY, "oldest item waiting 60s"),
        (
            90,
            120,
            Status.DEGRADED,
            Reason.SATURATION,
            "90 of 100 items queued (90%); oldest item waiting 120s",
        ),
        (100, 0, Status.UNHEALTHY, Reason.SATURATION, "100 of 100 items queued (100%)"),
        (5, 600, Status.UNHEALTHY, Reason.LATENCY, "oldest item waiting 600s"),
        (
            150,
            900,
            Status.UNHEALTHY,
            Reason.SATURATION,
            "150 of 100 items queued (150%); oldest item waiting 900s",
        ),
    ],
)
def test_thresholds_by_table(
    depth: int, age: float | None, status: Status, reason: Reason | None, message: str
) -> None:
    """Each threshold is reached at its value; the worse status wins and lists its breaches."""
    result = judge(STREAM, depth, age)

    assert (result.status, result.reason, result.message) == (status, reason, message)


def test_details_carry_depth_capacity_ratio_and_age() -> None:
    """The details hold the depth, the configured capacity, their ratio and the age."""
    result = judge(STREAM, 25, 12.3456, pending=20, lag=5)

    assert dict(result.details) == {
        "pending": 20,
        "lag": 5,
        "depth": 25,
        "capacity": 100,
        "depth_ratio": 0.25,
        "oldest_age_seconds": 12.346,
    }


def test_an_empty_queue_has_age_zero_and_a_full_one_of_unknown_age_has_none() -> None:
    """An empty queue's oldest age is 0; a non-empty one whose age is unknown reports none."""
    assert judge(STREAM, 0, None).details["oldest_age_seconds"] == 0.0
    assert "oldest_age_seconds" not in judge(STREAM, 3, None).details


def test_a_list_reports_no_age() -> None:
    """A list cannot date its items: its result has no age, even when empty."""
    result = judge(_list(capacity=10), 0, None)

    assert result.status is Status.HEALTHY
    assert "oldest_age_seconds" not in result.details


_RATIOS = st.floats(min_value=0.01, max_value=1.0)
_AGES = st.none() | st.floats(min_value=0.001, max_value=1e6)


@st.composite
def _checks(draw: st.DrawFn) -> RedisStreamCheck:
    """Any valid stream check's limits."""
    low, high = sorted((draw(_RATIOS), draw(_RATIOS)))
    ages = [draw(_AGES), draw(_AGES)]
    if None not in ages:
        ages.sort()
    return _stream(
        capacity=draw(st.integers(1, 10_000)),
        degraded_ratio=low,
        unhealthy_ratio=high,
        degraded_age_seconds=ages[0],
        unhealthy_age_seconds=ages[1],
    )


_DEPTHS = st.integers(0, 50_000)
_OBSERVED_AGES = st.none() | st.floats(min_value=0, max_value=1e7)


@given(_checks(), _DEPTHS, _DEPTHS, _OBSERVED_AGES)
def test_a_deeper_queue_is_never_rated_better(
    check: RedisStreamCheck, one: int, other: int, age: float | None
) -> None:
    """More items waiting, all else equal, never give a less severe status."""
    shallow, deep = sorted((one, other))

    assert judge(check, shallow, age).status.severity <= judge(check, deep, age).status.severity


@given(_checks(), _DEPTHS, st.floats(0, 1e7), st.floats(0, 1e7))
def test_an_older_backlog_is_never_rated_better(
    check: RedisStreamCheck, depth: int, one: float, other: float
) -> None:
    """An older oldest item, all else equal, never gives a less severe status."""
    young, old = sorted((one, other))

    assert judge(check, depth, young).status.severity <= judge(check, depth, old).status.severity


@given(_checks(), _DEPTHS, _OBSERVED_AGES)
def test_healthy_exactly_below_every_degraded_threshold(
    check: RedisStreamCheck, depth: int, age: float | None
) -> None:
    """Healthy if and only if the ratio and the age are below every threshold set."""
    ages = (check.degraded_age_seconds, check.unhealthy_age_seconds)
    limits = [limit for limit in ages if limit is not None]
    below = depth / check.capacity < check.degraded_ratio and (
        age is None or all(age < limit for limit in limits)
    )
    result = judge(check, depth, age)

    assert (result.status is Status.HEALTHY) == below
    assert result.details["capacity"] == check.capacity
    assert (result.reason is None) == below
