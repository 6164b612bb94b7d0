"""Watermark hysteresis, the drain rate and the Little's-law Retry-After estimate."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.queue.backpressure import DrainRate, Watermarks, retry_after_seconds


def test_depth_turns_on_at_high_and_off_only_at_low() -> None:
    """Between the marks the state holds in both directions."""
    marks = Watermarks(depth_high=10, depth_low=4)

    assert [marks.update(d, 0.0) for d in (5, 9, 10, 9, 5, 4, 5, 9)] == [
        False,
        False,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert marks.transitions == 2


def test_wait_turns_on_and_must_fall_with_depth_to_turn_off() -> None:
    """A long wait turns it on; off needs both the wait and the depth at their low marks."""
    marks = Watermarks(depth_high=10, depth_low=4, wait_high_seconds=2.0, wait_low_seconds=0.5)

    assert marks.update(1, 2.0) is True
    assert marks.update(1, 1.0) is True
    assert marks.update(6, 0.1) is True
    assert marks.update(3, 0.5) is False


readings = st.lists(
    st.tuples(st.integers(0, 20), st.floats(0, 5, allow_nan=False)), min_size=1, max_size=200
)


@settings(max_examples=300, deadline=None)
@given(
    readings,
    st.integers(1, 20),
    st.data(),
    st.booleans(),
)
def test_hysteresis_never_flaps(
    series: list[tuple[int, float]], high: int, data: st.DataObject, with_wait: bool
) -> None:
    """The state changes only past a mark: on at high, off at low, never in between."""
    low = data.draw(st.integers(0, high - 1))
    wait_high = data.draw(st.floats(0.1, 5)) if with_wait else None
    wait_low = data.draw(st.floats(0, wait_high - 0.01)) if wait_high is not None else None
    marks = Watermarks(high, low, wait_high, wait_low)
    before = False
    for depth, wait in series:
        after = marks.update(depth, wait)
        at_high = depth >= high or (wait_high is not None and wait >= wait_high)
        at_low = depth <= low and (wait_low is None or wait <= wait_low)
        if after != before:
            assert (after and at_high) or (not after and at_low)
        if at_high:
            assert after
        if at_low:
            assert not after
        before = after


def test_drain_rate_counts_the_window_only() -> None:
    """Dequeues older than the window are forgotten; with none left there is no rate."""
    rate = DrainRate(window_seconds=10.0)
    for t in (0.0, 1.0, 2.0, 3.0):
        rate.record(t)

    assert rate.per_second(4.0) == 1.0
    assert rate.per_second(12.5) == 1 / 9.5
    assert rate.per_second(100.0) is None


def test_a_stalled_queue_shows_a_falling_rate() -> None:
    """The rate divides by the time since the oldest dequeue in the window, up to now."""
    rate = DrainRate(window_seconds=60.0)
    for i in range(10):
        rate.record(i * 0.1)

    assert rate.per_second(1.0) == 10.0
    assert rate.per_second(10.0) == 1.0


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 10_000),
    st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
    st.floats(0.01, 10),
    st.floats(0, 100),
)
def test_retry_after_stays_in_bounds(
    waiting: int, rate: float | None, floor: float, extra: float
) -> None:
    """Retry-After is within [floor, ceiling], and the ceiling when nothing was measured."""
    ceiling = floor + extra
    value = retry_after_seconds(waiting, rate, floor, ceiling)

    assert floor <= value <= ceiling
    if not rate:
        assert value == ceiling
    elif floor <= waiting / rate <= ceiling:
        assert value == waiting / rate


def test_a_slow_drain_gives_a_long_retry() -> None:
    """Half a job a second drains 2 waiting jobs in 4 s (a rate under 1 is still a rate)."""
    assert retry_after_seconds(2, 0.5, 0.1, 60.0) == 4.0
    assert retry_after_seconds(2, 0.0, 0.1, 60.0) == 60.0


def test_the_drain_rate_remembers_the_last_1024_dequeues() -> None:
    """Only the most recent `keep` (1024 by default) dequeues count, however many there were."""
    rate = DrainRate(window_seconds=10_000.0)
    for second in range(1100):
        rate.record(float(second))
    # The oldest remembered dequeue is at 1100 - 1024 = 76 s.
    assert rate.per_second(1099.0) == 1024 / (1099 - 76)


def test_the_drain_rate_window_includes_its_start() -> None:
    """A dequeue exactly `window_seconds` ago still counts; one just before does not."""
    rate = DrainRate(window_seconds=10.0)
    rate.record(0.0)
    rate.record(4.0)
    assert rate.per_second(10.0) == 2 / 10
    assert rate.per_second(10.5) == 1 / 6.5


def test_watermark_transitions_are_counted() -> None:
    """Every turn on and every turn off counts one transition."""
    marks = Watermarks(depth_high=10, depth_low=2)
    for depth in (10, 1, 10, 1):
        marks.update(depth, 0.0)
    assert marks.transitions == 4
