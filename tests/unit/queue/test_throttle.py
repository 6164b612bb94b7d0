"""The throttle: AIMD on backpressure, the factor of each degradation level, subscribers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.queue.config import QueueConfig
from agent.queue.errors import QueueConfigError
from agent.queue.manager import WorkQueue
from agent.queue.throttle import Throttle, ThrottleConfig
from tests.unit.queue.clock import FakeClock, settle


def test_backpressure_halves_and_clear_ticks_add_back() -> None:
    """Multiplicative decrease while on, additive increase while clear, capped at 1."""
    state = {"on": True}
    throttle = Throttle(lambda: state["on"], config=ThrottleConfig(increase_step=0.25))

    assert [throttle.tick() for _ in range(3)] == [0.5, 0.25, 0.125]
    state["on"] = False
    assert [throttle.tick() for _ in range(5)] == [0.375, 0.625, 0.875, 1.0, 1.0]


def test_the_factor_never_falls_below_the_floor() -> None:
    """However long backpressure lasts, the factor stops at `min_factor`."""
    throttle = Throttle(lambda: True, config=ThrottleConfig(min_factor=0.1))

    factors = [throttle.tick() for _ in range(20)]

    assert factors[-1] == 0.1
    assert min(factors) == 0.1


def test_levels_by_name_or_position_scale_the_factor() -> None:
    """full 1.0, degraded 0.5, minimal 0.2 by name or index; past the last is the last."""
    level: dict[str, Any] = {"now": "full"}
    throttle = Throttle(lambda: False, lambda: level["now"])
    seen = []
    for value in ("full", "degraded", "minimal", 1, 0, 9):
        level["now"] = value
        seen.append(throttle.tick())

    assert seen == [1.0, 0.5, 0.2, 0.5, 1.0, 0.1]


def test_an_unknown_level_throttles_like_the_worst_and_is_logged_once() -> None:
    """A level name not configured gets the last factor and one warning."""
    throttle = Throttle(lambda: False, lambda: "on-fire")
    with structlog.testing.capture_logs() as logs:
        assert throttle.tick() == 0.1
        assert throttle.tick() == 0.1

    assert [e["event"] for e in logs] == ["throttle.level.unknown"]


def test_load_and_level_multiply() -> None:
    """Backpressure at the degraded level gives 0.5 x 0.5."""
    throttle = Throttle(lambda: True, lambda: "degraded")

    assert throttle.tick() == 0.25
    assert (throttle.load_factor, throttle.level_factor) == (0.5, 0.5)


def test_subscribers_get_the_factor_now_and_on_change_only() -> None:
    """A subscriber is called at once, then only when the factor moves; it can unsubscribe."""
    state = {"on": False}
    throttle = Throttle(lambda: state["on"])
    scaled: list[float] = []
    unsubscribe = throttle.subscribe(scaled.append)

    throttle.tick()
    state["on"] = True
    throttle.tick()
    unsubscribe()
    throttle.tick()

    assert scaled == [1.0, 0.5]


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    """One subscriber raising is logged; the next still gets the factor."""
    throttle = Throttle(lambda: True)
    got: list[float] = []

    def broken(_: float) -> None:
        raise RuntimeError("limiter bug")

    throttle.subscribe(broken)
    throttle.subscribe(got.append)
    with structlog.testing.capture_logs() as logs:
        throttle.tick()

    assert got == [1.0, 0.5]
    assert "throttle.subscriber.failed" in [e["event"] for e in logs]


async def test_run_follows_a_queue_on_the_clock() -> None:
    """`run()` ticks every interval against a real queue's backpressure."""
    clock = FakeClock()
    queue = WorkQueue("q", QueueConfig(capacity=2, min_workers=0, max_workers=1), clock=clock)
    throttle = Throttle(lambda: queue.backpressure_active, clock=clock)
    gate = asyncio.Event()
    queue.submit_nowait(gate.wait)
    await settle()
    queue.submit_nowait(gate.wait)
    queue.submit_nowait(gate.wait)  # two waiting: at capacity, backpressure on
    runner = asyncio.create_task(throttle.run())

    await clock.advance(2.0)
    assert throttle.factor == 0.125  # ticks at 0, 1 and 2 s
    gate.set()
    await clock.advance(1.0)
    assert throttle.factor == 0.225

    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"decrease_factor": 1.0}, "decrease_factor"),
        ({"decrease_factor": 0.0}, "decrease_factor"),
        ({"increase_step": 0}, "increase_step"),
        ({"min_factor": 0}, "min_factor"),
        ({"min_factor": 1.5}, "min_factor"),
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"level_factors": {}}, "level_factors"),
        ({"level_factors": {"full": 1.0, "degraded": 1.2}}, "level_factors"),
        ({"level_factors": {"full": 0.5, "degraded": 0.8}}, "level_factors"),
        ({"level_factors": {"full": 0.0}}, "level_factors"),
    ],
)
def test_bad_throttle_settings_name_the_field(options: dict[str, Any], field: str) -> None:
    """Each refused setting raises QueueConfigError naming the field."""
    with pytest.raises(QueueConfigError, match=f"ThrottleConfig.{field}"):
        ThrottleConfig(**options)


level_values = st.one_of(
    st.sampled_from(["full", "degraded", "minimal", "maintenance", "unknown"]),
    st.integers(-5, 10),
)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.01, 0.99),
    st.floats(0.001, 1),
    st.floats(1e-6, 1),
    st.lists(st.floats(1e-6, 1), min_size=1, max_size=5),
    st.lists(st.tuples(st.booleans(), level_values), min_size=1, max_size=100),
)
def test_factor_is_always_in_zero_one(
    decrease: float,
    increase: float,
    floor: float,
    factors: list[float],
    ticks: list[tuple[bool, int | str]],
) -> None:
    """Whatever the load, the levels and the settings, the factor stays in (0, 1]."""
    ordered = sorted(factors, reverse=True)
    config = ThrottleConfig(
        decrease_factor=decrease,
        increase_step=increase,
        min_factor=floor,
        level_factors={f"l{i}": f for i, f in enumerate(ordered)},
    )
    script = iter(ticks)
    current: dict[str, Any] = {}

    def backpressure() -> bool:
        current["on"], current["level"] = next(script)
        return bool(current["on"])

    throttle = Throttle(backpressure, lambda: current["level"], config)
    published: list[float] = []
    throttle.subscribe(published.append)
    for _ in ticks:
        factor = throttle.tick()
        assert 0 < factor <= 1
        assert factor >= floor
    assert all(0 < f <= 1 for f in published)
