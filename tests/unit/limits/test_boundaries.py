"""Decisions at the edges of windows, to the microsecond, and the throttle driving a limiter."""

from __future__ import annotations

from agent.limits import Limit, MemoryStorage, Strategy, SyncLimiter
from agent.queue.throttle import Throttle
from tests.harness.wait import MicroClock

SECOND = 1_000_000  # µs


def _limiter(strategy: Strategy, clock: MicroClock, quota: int = 3) -> SyncLimiter:
    return SyncLimiter("edge", Limit(quota, 1, strategy), MemoryStorage(clock))


def test_fixed_window_resets_exactly_at_the_boundary_and_allows_twice_across_it() -> None:
    """The last microsecond of a window is still refused; the first of the next admits a full
    quota, so a fixed window admits 2x its quota across a boundary (as documented)."""
    clock = MicroClock(10 * SECOND - 1)
    limiter = _limiter(Strategy.FIXED_WINDOW, clock)
    assert [limiter.hit("k") for _ in range(4)] == [True, True, True, False]
    clock.now += 1  # the next window starts
    assert [limiter.hit("k") for _ in range(4)] == [True, True, True, False]


def test_sliding_window_weighs_the_previous_window_at_the_boundary() -> None:
    """Right after a boundary the previous window still weighs fully: no 2x burst; half a window
    later half of it has decayed."""
    clock = MicroClock(10 * SECOND - 1)
    limiter = _limiter(Strategy.SLIDING_WINDOW, clock, quota=4)
    assert [limiter.hit("k") for _ in range(5)] == [True, True, True, True, False]
    clock.now += 1
    assert not limiter.hit("k")
    clock.now += SECOND // 2
    assert [limiter.hit("k") for _ in range(3)] == [True, True, False]


def test_sliding_log_frees_a_unit_exactly_one_period_after_it() -> None:
    """A unit admitted at t counts until t + period - 1 µs and not at t + period."""
    clock = MicroClock(10 * SECOND)
    limiter = _limiter(Strategy.SLIDING_LOG, clock, quota=2)
    assert limiter.hit("k")
    clock.now += SECOND // 2
    assert limiter.hit("k")
    clock.now = 11 * SECOND - 1
    assert not limiter.hit("k")
    clock.now = 11 * SECOND
    assert limiter.hit("k")
    assert not limiter.hit("k")


def test_gcra_spaces_admissions_by_the_interval_after_a_burst() -> None:
    """After the burst, the next unit comes exactly one interval (period / limit) later."""
    clock = MicroClock(10 * SECOND)
    limiter = SyncLimiter("edge", Limit(4, 1, burst=2), MemoryStorage(clock))
    assert [limiter.hit("k") for _ in range(3)] == [True, True, False]
    clock.now += SECOND // 4 - 1
    assert not limiter.hit("k")
    clock.now += 1
    assert limiter.hit("k")


def test_a_throttle_scales_a_limiter_by_load_and_by_degradation_level() -> None:
    """Backpressure halves the limiter's rate per tick, the level multiplies it, and both
    recover: the throttle of `agent.queue` drives `scale` of `agent.limits`."""
    pressure = {"on": True}
    level = {"now": "full"}
    limiter = SyncLimiter(
        "api", Limit(100, 60, Strategy.FIXED_WINDOW), MemoryStorage(MicroClock(0))
    )
    throttle = Throttle(lambda: pressure["on"], lambda: level["now"])
    throttle.subscribe(limiter.scale)

    throttle.tick()
    assert limiter.factor == 0.5
    assert limiter.limits[0].limit == 50
    level["now"] = "degraded"
    throttle.tick()
    assert limiter.limits[0].limit == 12  # 100 x 0.25 (load) x 0.5 (degraded)
    pressure["on"] = False
    level["now"] = "full"
    for _ in range(10):
        throttle.tick()
    assert limiter.factor == 1.0
    assert limiter.limits[0].limit == 100


def test_sliding_window_waits_are_whole_microseconds_as_on_redis() -> None:
    """A wait that falls between microseconds is rounded up to the next one (as Redis, which
    counts in microseconds, computes it), and the cost fits once it has passed."""
    clock = MicroClock(10 * SECOND - 1)
    limiter = _limiter(Strategy.SLIDING_WINDOW, clock)
    assert [limiter.hit("k") for _ in range(3)] == [True, True, True]
    clock.now += 1  # a new window: the previous 3 weigh fully
    wait = limiter.decide("k").retry_after
    nanoseconds = round(wait * 1_000_000_000)
    assert nanoseconds == 333_334_000  # a third of a second, up to the next microsecond
    clock.now += nanoseconds // 1000
    assert limiter.hit("k")
