"""Circuit breaker: windows, thresholds, half-open permits, generations, manual states."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.degradation.breaker import (
    BreakerConfig,
    BreakerState,
    CallOutcome,
    CircuitBreaker,
    CircuitOpenError,
    WindowType,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        """Start at `now` seconds."""
        self.now = now

    def __call__(self) -> float:
        """The current fake time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`."""
        self.now += seconds


Transition = tuple[str, BreakerState, BreakerState]


def make(clock: FakeClock, **overrides: Any) -> tuple[CircuitBreaker, list[Transition]]:
    """A breaker on `clock` with small test defaults, and the list its listener appends to."""
    options: dict[str, Any] = {
        "window_size": 4,
        "minimum_calls": 4,
        "failure_rate_threshold": 50.0,
        "slow_call_duration_seconds": 5.0,
        "wait_in_open_seconds": 30.0,
    }
    options.update(overrides)
    breaker = CircuitBreaker("db", BreakerConfig(**options), clock=clock)
    events: list[Transition] = []
    breaker.add_listener(lambda name, old, new: events.append((name, old, new)))
    return breaker, events


async def succeed() -> str:
    """A call that works."""
    return "ok"


async def crash() -> str:
    """A call whose dependency is down."""
    raise ConnectionError("down")


def slow(clock: FakeClock, seconds: float) -> Callable[[], Awaitable[str]]:
    """A call that works but takes `seconds` of fake time."""

    async def call() -> str:
        clock.advance(seconds)
        return "late"

    return call


async def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    """Make `times` failing calls through `breaker`."""
    for _ in range(times):
        with pytest.raises(ConnectionError):
            await breaker.call(crash)


async def trip(breaker: CircuitBreaker) -> None:
    """Open `breaker` with failures."""
    await fail(breaker, breaker.config.minimum_calls)
    assert breaker.state is OPEN


class Gate:
    """A call that blocks until the test opens the gate, then succeeds or fails."""

    def __init__(self, error: Exception | None = None) -> None:
        """A closed gate; calls end with `error` if given."""
        self.event = asyncio.Event()
        self.started = 0
        self.error = error

    async def __call__(self) -> str:
        """Count the start, wait for the gate, then finish."""
        self.started += 1
        await self.event.wait()
        if self.error is not None:
            raise self.error
        return "probe"


async def test_stays_closed_below_minimum_calls() -> None:
    """Failures fewer than minimum_calls never open the breaker, and no rate is reported."""
    breaker, events = make(FakeClock(), window_size=10, minimum_calls=5)

    await fail(breaker, 4)

    stats = breaker.stats()
    assert breaker.state is CLOSED
    assert events == []
    assert stats.buffered_calls == 4
    assert stats.failure_rate is None


async def test_count_window_opens_exactly_at_failure_rate_threshold() -> None:
    """With minimum calls in the window, the call that brings failures to the threshold opens it."""
    breaker, events = make(FakeClock())
    await breaker.call(succeed)
    await breaker.call(succeed)
    await fail(breaker)
    assert breaker.state is CLOSED

    await fail(breaker)

    assert breaker.state is OPEN
    assert events == [("db", CLOSED, OPEN)]


async def test_count_window_keeps_only_the_last_calls() -> None:
    """Old outcomes leave the ring: two failures followed by four successes give a 0% rate."""
    breaker, _ = make(FakeClock(), failure_rate_threshold=75.0)
    await fail(breaker, 2)
    for _ in range(4):
        await breaker.call(succeed)

    stats = breaker.stats()
    assert (stats.buffered_calls, stats.failure_rate) == (4, 0.0)


async def test_time_window_opens_at_failure_rate_threshold() -> None:
    """A time window counts every call of the last N seconds and opens at the threshold."""
    clock = FakeClock()
    breaker, _ = make(clock, window_type=WindowType.TIME, window_size=10, minimum_calls=4)
    await breaker.call(succeed)
    clock.advance(3)
    await breaker.call(succeed)
    clock.advance(3)
    await fail(breaker)
    clock.advance(3.5)
    assert breaker.state is CLOSED

    await fail(breaker)

    assert breaker.state is OPEN


async def test_time_window_forgets_buckets_older_than_the_window() -> None:
    """Failures older than window_size seconds no longer count toward the minimum or the rate."""
    clock = FakeClock()
    breaker, _ = make(clock, window_type=WindowType.TIME, window_size=10, minimum_calls=4)
    await fail(breaker, 3)
    clock.advance(10)

    await fail(breaker)

    assert breaker.state is CLOSED
    assert breaker.stats().buffered_calls == 1


async def test_slow_call_rate_opens_the_breaker() -> None:
    """Calls that succeed but take slow_call_duration_seconds or more open it at their threshold."""
    clock = FakeClock()
    breaker, _ = make(clock, window_size=2, minimum_calls=2, slow_call_rate_threshold=50.0)
    await breaker.call(succeed)

    await breaker.call(slow(clock, 5.0))

    stats = breaker.stats()
    assert breaker.state is OPEN
    assert stats.calls[CallOutcome.FAILED] == 0
    assert stats.slow_calls == 1


async def test_open_rejects_without_calling_fn() -> None:
    """An open breaker raises CircuitOpenError with its name and remaining wait, fn not called."""
    clock = FakeClock()
    breaker, _ = make(clock)
    await trip(breaker)
    clock.advance(10)
    started: list[str] = []

    async def record() -> str:
        started.append("called")
        return "ok"

    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(record)

    assert started == []
    assert (caught.value.name, caught.value.state) == ("db", OPEN)
    assert caught.value.remaining_seconds == pytest.approx(20.0)
    assert breaker.stats().calls[CallOutcome.NOT_PERMITTED] == 1


async def test_wait_elapsed_next_call_moves_to_half_open() -> None:
    """After wait_in_open_seconds the state reads open until the next call makes it half-open."""
    clock = FakeClock()
    breaker, events = make(clock)
    await trip(breaker)
    clock.advance(30)
    assert breaker.state is OPEN
    gate = Gate()

    probe = asyncio.create_task(breaker.call(gate))
    await asyncio.sleep(0)

    assert breaker.state is HALF_OPEN
    assert events[-1] == ("db", OPEN, HALF_OPEN)
    gate.event.set()
    assert await probe == "probe"


async def test_half_open_permits_exactly_one_concurrent_probe() -> None:
    """Of two concurrent calls in half-open, one runs and the other is rejected at once."""
    clock = FakeClock()
    breaker, _ = make(clock)
    await trip(breaker)
    clock.advance(30)
    gate = Gate()

    first = asyncio.create_task(breaker.call(gate))
    second = asyncio.create_task(breaker.call(gate))
    await asyncio.sleep(0)

    assert gate.started == 1
    assert second.done()
    with pytest.raises(CircuitOpenError) as caught:
        second.result()
    assert (caught.value.state, caught.value.remaining_seconds) == (HALF_OPEN, 0.0)
    gate.event.set()
    assert await first == "probe"
    assert breaker.state is CLOSED


async def test_success_threshold_successes_close_the_breaker() -> None:
    """Half-open closes only after success_threshold consecutive successful probes."""
    clock = FakeClock()
    breaker, events = make(clock, success_threshold=3)
    await trip(breaker)
    clock.advance(30)

    await breaker.call(succeed)
    await breaker.call(succeed)
    assert breaker.state is HALF_OPEN
    await breaker.call(succeed)

    assert breaker.state is CLOSED
    assert events == [("db", CLOSED, OPEN), ("db", OPEN, HALF_OPEN), ("db", HALF_OPEN, CLOSED)]
    assert breaker.stats().buffered_calls == 0


async def test_failure_in_half_open_reopens_for_a_full_wait() -> None:
    """A failed probe reopens the breaker, and the open wait starts again from then."""
    clock = FakeClock()
    breaker, events = make(clock, success_threshold=2)
    await trip(breaker)
    clock.advance(30)
    await breaker.call(succeed)

    await fail(breaker)

    assert breaker.state is OPEN
    assert events[-1] == ("db", HALF_OPEN, OPEN)
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(succeed)
    assert caught.value.remaining_seconds == pytest.approx(30.0)


async def test_slow_probe_reopens() -> None:
    """A half-open probe that succeeds slowly reopens the breaker: the dependency is not back."""
    clock = FakeClock()
    breaker, _ = make(clock)
    await trip(breaker)
    clock.advance(30)

    await breaker.call(slow(clock, 6.0))

    assert breaker.state is OPEN


async def test_force_open_rejects_until_reset() -> None:
    """A forced-open breaker rejects with no remaining time however long one waits; reset closes."""
    clock = FakeClock()
    breaker, events = make(clock)
    breaker.force_open()
    clock.advance(3600)

    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(succeed)
    assert caught.value.remaining_seconds is None
    assert breaker.state is BreakerState.FORCED_OPEN

    breaker.reset()

    assert await breaker.call(succeed) == "ok"
    assert events == [
        ("db", CLOSED, BreakerState.FORCED_OPEN),
        ("db", BreakerState.FORCED_OPEN, CLOSED),
    ]


async def test_disabled_breaker_never_trips_but_counts() -> None:
    """A disabled breaker lets every call through and stays disabled, still counting outcomes."""
    breaker, _ = make(FakeClock())
    breaker.disable()

    await fail(breaker, 10)

    assert breaker.state is BreakerState.DISABLED
    assert breaker.stats().calls[CallOutcome.FAILED] == 10


async def test_reset_empties_the_window_from_any_state() -> None:
    """reset() returns an open breaker to closed with an empty window, keeping lifetime counters."""
    breaker, _ = make(FakeClock())
    await trip(breaker)

    breaker.reset()

    stats = breaker.stats()
    assert stats.state is CLOSED
    assert stats.buffered_calls == 0
    assert stats.calls[CallOutcome.FAILED] == 4
    await fail(breaker, 3)
    assert breaker.state is CLOSED


async def test_cancelled_probe_releases_its_permit_and_is_not_counted() -> None:
    """A cancelled half-open probe re-raises CancelledError, frees its permit, is no failure."""
    clock = FakeClock()
    breaker, _ = make(clock)
    await trip(breaker)
    clock.advance(30)
    probe = asyncio.create_task(breaker.call(Gate()))
    await asyncio.sleep(0)

    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    stats = breaker.stats()
    assert stats.state is HALF_OPEN
    assert stats.calls[CallOutcome.FAILED] == 4
    assert stats.calls[CallOutcome.CANCELLED] == 1
    assert await breaker.call(succeed) == "ok"
    assert breaker.state is CLOSED


async def test_cancelled_call_in_closed_state_is_not_recorded() -> None:
    """A call cancelled while closed does not enter the window."""
    breaker, _ = make(FakeClock())
    call = asyncio.create_task(breaker.call(Gate()))
    await asyncio.sleep(0)

    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    assert breaker.stats().buffered_calls == 0


async def test_outcome_from_an_older_generation_is_ignored() -> None:
    """A call started while closed that fails once the breaker is half-open changes nothing."""
    clock = FakeClock()
    breaker, _ = make(clock)
    straggler_gate = Gate(ConnectionError("late"))
    straggler = asyncio.create_task(breaker.call(straggler_gate))
    await asyncio.sleep(0)
    await trip(breaker)
    clock.advance(30)
    probe_gate = Gate()
    probe = asyncio.create_task(breaker.call(probe_gate))
    await asyncio.sleep(0)

    straggler_gate.event.set()
    with pytest.raises(ConnectionError):
        await straggler

    assert breaker.state is HALF_OPEN
    with pytest.raises(CircuitOpenError):  # the probe still holds the only permit
        await breaker.call(succeed)
    probe_gate.event.set()
    await probe
    assert breaker.state is CLOSED
    assert breaker.stats().calls[CallOutcome.FAILED] == 5


async def test_ignored_exceptions_do_not_count() -> None:
    """An ignored exception propagates but is neither success nor failure in the window."""
    breaker, _ = make(FakeClock(), ignore_exceptions=(KeyError,))

    async def missing() -> str:
        raise KeyError("k")

    for _ in range(6):
        with pytest.raises(KeyError):
            await breaker.call(missing)

    stats = breaker.stats()
    assert breaker.state is CLOSED
    assert (stats.buffered_calls, stats.calls[CallOutcome.IGNORED]) == (0, 6)


async def test_exception_outside_record_exceptions_counts_as_success() -> None:
    """With record_exceptions set, other exceptions mean the dependency answered: a success."""
    breaker, _ = make(FakeClock(), record_exceptions=(ConnectionError,))

    async def bad_request() -> str:
        raise ValueError("bad input")

    for _ in range(4):
        with pytest.raises(ValueError, match="bad input"):
            await breaker.call(bad_request)

    assert breaker.state is CLOSED
    assert breaker.stats().failure_rate == 0.0


async def test_guard_records_the_block_outcome() -> None:
    """`async with breaker.guard()` records a failing block and lets its exception through."""
    breaker, _ = make(FakeClock(), window_size=1, minimum_calls=1)

    with pytest.raises(ConnectionError):
        async with breaker.guard():
            raise ConnectionError("down")

    assert breaker.state is OPEN


async def test_listeners_fire_once_per_transition() -> None:
    """Each transition calls listeners once; repeats are none; a raising listener is contained."""
    clock = FakeClock()
    breaker, events = make(clock)

    def broken(name: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    with structlog.testing.capture_logs() as logs:
        await trip(breaker)
        with pytest.raises(CircuitOpenError):
            await breaker.call(succeed)
        breaker.force_open()
        breaker.force_open()
        breaker.reset()
        breaker.reset()

    assert events == [
        ("db", CLOSED, OPEN),
        ("db", OPEN, BreakerState.FORCED_OPEN),
        ("db", BreakerState.FORCED_OPEN, CLOSED),
    ]
    assert breaker.stats().transitions == 3
    failed = {"event": "circuit breaker listener failed", "breaker": "db", "log_level": "error"}
    assert logs == [
        entry
        for old, new in [
            (CLOSED, OPEN),
            (OPEN, BreakerState.FORCED_OPEN),
            (BreakerState.FORCED_OPEN, CLOSED),
        ]
        for entry in (
            {
                "event": "circuit breaker state changed",
                "breaker": "db",
                "old": old,
                "new": new,
                "log_level": "info",
            },
            {**failed, "exc_info": True},
        )
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"window_size": 0}, "BreakerConfig.window_size: must be at least 1"),
        ({"minimum_calls": 5}, "BreakerConfig.minimum_calls: must not exceed window_size"),
        (
            {"failure_rate_threshold": 0},
            "BreakerConfig.failure_rate_threshold: must be a percentage",
        ),
        ({"slow_call_rate_threshold": 101}, "BreakerConfig.slow_call_rate_threshold: must be a"),
        ({"wait_in_open_seconds": -1}, "BreakerConfig.wait_in_open_seconds: must be a finite"),
        ({"permitted_calls_in_half_open": 0}, "BreakerConfig.permitted_calls_in_half_open"),
        ({"record_exceptions": (asyncio.CancelledError,)}, "BreakerConfig.record_exceptions: must"),
    ],
)
def test_bad_config_is_rejected_naming_the_field(overrides: dict[str, Any], message: str) -> None:
    """Invalid settings raise ValueError naming the field and the reason."""
    options: dict[str, Any] = {"window_size": 4, "minimum_calls": 4}
    options.update(overrides)
    with pytest.raises(ValueError, match=message):
        BreakerConfig(**options)


@settings(deadline=None, max_examples=200)
@given(
    outcomes=st.lists(st.booleans(), max_size=30),
    window_size=st.integers(1, 8),
    data=st.data(),
)
def test_count_window_opens_exactly_when_rate_and_minimum_are_met(
    outcomes: list[bool], window_size: int, data: st.DataObject
) -> None:
    """Any outcome sequence opens the breaker exactly when minimum calls and rate are met."""
    minimum = data.draw(st.integers(1, window_size), label="minimum_calls")
    threshold = data.draw(st.integers(1, 100), label="failure_rate_threshold")

    async def drive() -> list[BreakerState]:
        breaker = CircuitBreaker(
            "p",
            BreakerConfig(
                window_size=window_size,
                minimum_calls=minimum,
                failure_rate_threshold=threshold,
                slow_call_duration_seconds=1e9,
            ),
            clock=FakeClock(),
        )
        states = []
        for failed in outcomes:
            if breaker.state is CLOSED:
                with contextlib.suppress(ConnectionError):
                    await breaker.call(crash if failed else succeed)
            states.append(breaker.state)
        return states

    expected: list[BreakerState] = []
    opened = False
    for i in range(len(outcomes)):
        window = outcomes[: i + 1][-window_size:]
        calls, failures = len(window), sum(window)
        opened = opened or (calls >= minimum and 100 * failures >= threshold * calls)
        expected.append(OPEN if opened else CLOSED)

    assert asyncio.run(drive()) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"minimum_calls": 0}, "BreakerConfig.minimum_calls: must be at least 1"),
        (
            {"slow_call_duration_seconds": 0},
            "BreakerConfig.slow_call_duration_seconds: must be > 0",
        ),
        ({"wait_in_open_seconds": float("inf")}, "BreakerConfig.wait_in_open_seconds: must be a"),
        ({"permitted_calls_in_half_open": 0}, "BreakerConfig.permitted_calls_in_half_open: >= 1"),
        ({"success_threshold": 0}, "BreakerConfig.success_threshold: must be at least 1"),
        (
            {"record_exceptions": (ValueError, KeyboardInterrupt)},
            "BreakerConfig.record_exceptions: must be a tuple of Exception subclasses",
        ),
        (
            {"ignore_exceptions": [ValueError]},
            "BreakerConfig.ignore_exceptions: must be a tuple of Exception subclasses",
        ),
        ({"window_size": 4, "minimum_calls": 5}, "BreakerConfig.minimum_calls: must not exceed"),
    ],
)
def test_each_bad_field_is_named_with_its_reason(overrides: dict[str, Any], message: str) -> None:
    """The ValueError names the one field at fault and the rule it breaks, word for word."""
    with pytest.raises(ValueError, match=r"^BreakerConfig\.") as caught:
        BreakerConfig(**overrides)

    assert str(caught.value).startswith(message)
    if not message.endswith(("must be a", "must not exceed")):
        assert str(caught.value) == message


@pytest.mark.parametrize(
    "overrides",
    [
        {"minimum_calls": 1, "window_size": 1},
        {"slow_call_duration_seconds": 0.5},
        {"wait_in_open_seconds": 0},
        {"wait_in_open_seconds": 0.5},
        {"failure_rate_threshold": 100, "slow_call_rate_threshold": 0.5},
        {"permitted_calls_in_half_open": 1, "success_threshold": 1},
        {"window_type": WindowType.TIME, "window_size": 1, "minimum_calls": 50},
    ],
)
def test_values_at_the_bounds_are_accepted(overrides: dict[str, Any]) -> None:
    """The smallest and largest allowed values make a valid config."""
    config = BreakerConfig(**overrides)

    assert {k: getattr(config, k) for k in overrides} == overrides


async def test_rejections_say_why_and_are_counted_in_every_state() -> None:
    """Open, forced-open and busy half-open each reject with their own message and count."""
    clock = FakeClock()
    breaker, _ = make(clock)
    await trip(breaker)
    clock.advance(29.5)
    messages = []
    for _ in range(2):
        with pytest.raises(CircuitOpenError) as caught:
            await breaker.call(succeed)
        messages.append((str(caught.value), caught.value.remaining_seconds))
    clock.advance(0.5)
    gate = Gate()
    probe = asyncio.create_task(breaker.call(gate))
    await asyncio.sleep(0)
    for _ in range(2):
        with pytest.raises(CircuitOpenError) as caught:
            await breaker.call(succeed)
        messages.append((str(caught.value), caught.value.remaining_seconds))
    gate.event.set()
    await probe
    breaker.force_open()
    for _ in range(2):
        with pytest.raises(CircuitOpenError) as caught:
            await breaker.call(succeed)
        messages.append((str(caught.value), caught.value.remaining_seconds))
        assert (caught.value.name, caught.value.state) == ("db", BreakerState.FORCED_OPEN)

    assert messages == [
        ("circuit 'db' is open: call not permitted, retry in 0.500s", 0.5),
        ("circuit 'db' is open: call not permitted, retry in 0.500s", 0.5),
        ("circuit 'db' is half_open: call not permitted, retry in 0.000s", 0.0),
        ("circuit 'db' is half_open: call not permitted, retry in 0.000s", 0.0),
        ("circuit 'db' is forced_open: call not permitted, until reset", None),
        ("circuit 'db' is forced_open: call not permitted, until reset", None),
    ]
    assert breaker.stats().calls[CallOutcome.NOT_PERMITTED] == 6


async def test_half_open_admits_up_to_its_permit_limit_and_frees_permits_on_completion() -> None:
    """With three permits, three probes run at once, a fourth is refused until one finishes."""
    clock = FakeClock()
    breaker, _ = make(clock, permitted_calls_in_half_open=3, success_threshold=5)
    await trip(breaker)
    clock.advance(30)
    gates = [Gate() for _ in range(5)]

    running = [asyncio.create_task(breaker.call(g)) for g in gates[:3]]
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError):
        await breaker.call(succeed)
    gates[0].event.set()
    await running[0]
    running.append(asyncio.create_task(breaker.call(gates[3])))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError):
        await breaker.call(succeed)

    assert [g.started for g in gates] == [1, 1, 1, 1, 0]
    assert breaker.state is HALF_OPEN
    for gate in gates:
        gate.event.set()
    await asyncio.gather(*running)
    assert breaker.stats().calls[CallOutcome.NOT_PERMITTED] == 2


async def test_a_probe_of_an_earlier_half_open_spell_frees_no_permit_of_the_next() -> None:
    """A probe still running when half-open reopens does not give a permit back when it ends."""
    clock = FakeClock()
    breaker, _ = make(clock, permitted_calls_in_half_open=2)
    await trip(breaker)
    clock.advance(30)
    old = Gate()
    old_probe = asyncio.create_task(breaker.call(old))
    await asyncio.sleep(0)
    await fail(breaker)  # the second probe fails: open again
    clock.advance(30)
    new = Gate()
    new_probes = [asyncio.create_task(breaker.call(new)) for _ in range(2)]
    await asyncio.sleep(0)

    old.event.set()
    await old_probe
    with pytest.raises(CircuitOpenError):
        await breaker.call(succeed)

    assert new.started == 2
    new.event.set()
    await asyncio.gather(*new_probes)


async def test_generation_counts_every_state_entered() -> None:
    """A new breaker is generation 0; each transition and each reset adds one."""
    clock = FakeClock()
    breaker, _ = make(clock)
    seen = [breaker.generation]
    await trip(breaker)
    seen.append(breaker.generation)
    clock.advance(30)
    await breaker.call(succeed)  # half-open, then closed
    seen.append(breaker.generation)
    breaker.reset()
    seen.append(breaker.generation)

    assert seen == [0, 1, 3, 4]


async def test_reset_of_a_closed_breaker_empties_its_window() -> None:
    """reset() on a closed breaker drops the outcomes it had buffered."""
    breaker, _ = make(FakeClock())
    await fail(breaker, 3)

    breaker.reset()

    assert breaker.stats().buffered_calls == 0
    await fail(breaker, 3)
    assert breaker.state is CLOSED


async def test_lifetime_counters_add_up() -> None:
    """Cancelled, slow and failed calls are counted one by one over the breaker's life."""
    clock = FakeClock()
    breaker, _ = make(clock, window_size=10, minimum_calls=10)
    for _ in range(2):
        task = asyncio.create_task(breaker.call(Gate()))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await breaker.call(slow(clock, 5.0))
    await breaker.call(slow(clock, 6.0))
    await breaker.call(succeed)
    await fail(breaker, 2)

    stats = breaker.stats()
    assert stats.calls == {
        CallOutcome.SUCCESSFUL: 3,
        CallOutcome.FAILED: 2,
        CallOutcome.IGNORED: 0,
        CallOutcome.NOT_PERMITTED: 0,
        CallOutcome.CANCELLED: 2,
    }
    assert (stats.slow_calls, stats.buffered_calls) == (2, 5)


@pytest.mark.parametrize(
    ("window_type", "threshold", "failures", "slows", "opens"),
    [
        (WindowType.COUNT, {"failure_rate_threshold": 50.5}, 2, 0, False),
        (WindowType.COUNT, {"failure_rate_threshold": 50.0}, 2, 0, True),
        (WindowType.COUNT, {"slow_call_rate_threshold": 50.5}, 0, 2, False),
        (WindowType.COUNT, {"slow_call_rate_threshold": 50.0}, 0, 2, True),
        (WindowType.COUNT, {"slow_call_rate_threshold": 50.0}, 0, 1, False),
        (WindowType.TIME, {"failure_rate_threshold": 50.5}, 2, 0, False),
        (WindowType.TIME, {"failure_rate_threshold": 50.0}, 2, 0, True),
        (WindowType.TIME, {"slow_call_rate_threshold": 50.5}, 0, 2, False),
        (WindowType.TIME, {"slow_call_rate_threshold": 25.0}, 0, 1, True),
    ],
)
async def test_rates_trip_at_the_threshold_and_not_below(
    window_type: WindowType, threshold: dict[str, float], failures: int, slows: int, opens: bool
) -> None:
    """Of four calls, the failure or slow share opens the breaker exactly at its threshold."""
    clock = FakeClock()
    options: dict[str, Any] = {"failure_rate_threshold": 100.0, "slow_call_rate_threshold": 100.0}
    options.update(threshold)
    breaker, _ = make(clock, window_type=window_type, window_size=10, minimum_calls=4, **options)
    for _ in range(4 - failures - slows):
        await breaker.call(succeed)
    for _ in range(slows):
        await breaker.call(slow(clock, 5.0))
    for _ in range(failures):
        with contextlib.suppress(ConnectionError):
            await breaker.call(crash)

    assert breaker.state is (OPEN if opens else CLOSED)


async def test_stats_report_exact_rates() -> None:
    """stats() gives the name and the failure and slow rates of the window in percent."""
    clock = FakeClock()
    breaker, _ = make(clock, window_size=8, minimum_calls=8, failure_rate_threshold=100.0)
    for _ in range(5):
        await breaker.call(succeed)
    await breaker.call(slow(clock, 5.0))
    await fail(breaker, 2)

    stats = breaker.stats()
    assert (stats.name, stats.failure_rate, stats.slow_call_rate) == ("db", 25.0, 12.5)


async def test_call_passes_positional_and_keyword_arguments() -> None:
    """call(fn, *args, **kwargs) awaits fn with exactly those arguments."""
    breaker, _ = make(FakeClock())

    async def echo(a: int, *, b: str) -> str:
        return f"{a}{b}"

    assert await breaker.call(echo, 1, b="x") == "1x"


async def test_removed_listener_is_not_called() -> None:
    """A removed listener hears no more transitions; removing an unknown one is a no-op."""
    breaker, events = make(FakeClock())
    heard: list[Transition] = []

    def listener(name: str, old: BreakerState, new: BreakerState) -> None:
        heard.append((name, old, new))

    breaker.add_listener(listener)
    breaker.force_open()
    breaker.remove_listener(listener)
    breaker.remove_listener(listener)
    breaker.reset()

    assert heard == [("db", CLOSED, BreakerState.FORCED_OPEN)]
    assert len(events) == 2


async def test_a_guard_is_used_once() -> None:
    """Entering one guard twice raises RuntimeError; exiting one never entered is a bug."""
    breaker, _ = make(FakeClock())
    guard = breaker.guard()
    async with guard:
        pass

    with pytest.raises(RuntimeError) as twice:
        await guard.__aenter__()
    with pytest.raises(AssertionError) as unentered:
        await breaker.guard().__aexit__(None, None, None)

    assert str(twice.value) == "a breaker guard guards one call; take a new one from guard()"
    assert str(unentered.value) == "__aexit__ without __aenter__"


Call = tuple[float, bool, bool]  # (seconds before the call, failed, slow)


@settings(max_examples=200, deadline=None)
@given(
    window_type=st.sampled_from(WindowType),
    window_size=st.integers(1, 5),
    calls=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 7.0]), st.booleans(), st.booleans()
        ),
        max_size=20,
    ),
)
def test_window_counts_match_a_model(
    window_type: WindowType, window_size: int, calls: list[Call]
) -> None:
    """Before and after every call, the window holds exactly the calls a model of it keeps."""
    clock = FakeClock(100.0)
    breaker = CircuitBreaker(
        "w",
        BreakerConfig(
            window_type=window_type,
            window_size=window_size,
            minimum_calls=1,
            failure_rate_threshold=100.0,
            slow_call_duration_seconds=2.0,
            slow_call_rate_threshold=100.0,
        ),
        clock=clock,
    )
    done: list[tuple[float, bool, bool]] = []  # completion time, failed, slow

    def outcome(failed: bool, is_slow: bool) -> Callable[[], Awaitable[str]]:
        async def call() -> str:
            clock.advance(2.0 if is_slow else 0.0)
            if failed:
                raise ConnectionError("down")
            return "ok"

        return call

    def expected() -> tuple[int, float | None, float | None]:
        if window_type is WindowType.COUNT:
            kept = done[-window_size:]
        else:
            oldest = int(clock.now) - window_size + 1
            kept = [c for c in done if int(c[0]) >= oldest]
        if not kept:
            return 0, None, None
        return (
            len(kept),
            100.0 * sum(f for _, f, _ in kept) / len(kept),
            100.0 * sum(s for _, _, s in kept) / len(kept),
        )

    def window() -> tuple[int, float | None, float | None]:
        stats = breaker.stats()
        return stats.buffered_calls, stats.failure_rate, stats.slow_call_rate

    async def drive() -> None:
        for pause, failed, is_slow in calls:
            clock.advance(pause)
            assert window() == expected()
            with contextlib.suppress(ConnectionError):
                await breaker.call(outcome(failed, is_slow))
            done.append((clock.now, failed, is_slow))
            assert window() == expected()
            if breaker.state is OPEN:  # start over, so that the window keeps being exercised
                breaker.reset()
                done.clear()
        clock.advance(1.0)
        assert window() == expected()

    asyncio.run(drive())
