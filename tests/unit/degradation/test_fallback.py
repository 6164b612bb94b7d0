"""Fallback chains (cached, static, alternative, breaker) and the partial-failure handler."""

from __future__ import annotations

import asyncio

import pytest

from agent.degradation.breaker import BreakerConfig, CircuitBreaker
from agent.degradation.fallback import (
    AlternativeFallback,
    CachedFallback,
    CacheMissError,
    ComponentState,
    Fallback,
    FallbackExhaustedError,
    FallbackSource,
    PartialFailureHandler,
    PartialStatus,
    StaticFallback,
)

PRIMARY, CACHED = FallbackSource.PRIMARY, FallbackSource.CACHED
STATIC, ALTERNATIVE = FallbackSource.STATIC, FallbackSource.ALTERNATIVE


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


class Service:
    """A dependency that answers `price:<item>` until it is taken down; records each call."""

    def __init__(self, prefix: str = "price") -> None:
        """An up service whose answers start with `prefix`."""
        self.prefix = prefix
        self.up = True
        self.calls: list[str] = []

    async def __call__(self, item: str) -> str:
        """Answer for `item`, or raise ConnectionError when down."""
        self.calls.append(item)
        if not self.up:
            raise ConnectionError(f"{self.prefix} service down")
        return f"{self.prefix}:{item}"


async def broken(item: str) -> str:
    """A secondary service that is broken too."""
    raise RuntimeError("secondary broken")


def cached_chain(clock: FakeClock, service: Service) -> Fallback[[str], str]:
    """A primary with a cache (ttl 10 s, max staleness 60 s) and a static default."""
    return Fallback(
        "prices",
        service,
        [CachedFallback(ttl_seconds=10, max_staleness_seconds=60), StaticFallback("unknown")],
        clock=clock,
    )


async def test_primary_success_is_served_as_primary() -> None:
    """A working primary's value is returned with source primary and no errors."""
    fallback = cached_chain(FakeClock(), Service())

    result = await fallback.call("apple")

    assert (result.value, result.source, result.stale, result.errors) == (
        "price:apple",
        PRIMARY,
        False,
        (),
    )


async def test_chain_is_tried_in_order() -> None:
    """Strategies are tried in the order given; the first that works serves, errors are listed."""
    service = Service()
    service.up = False
    fallback = Fallback(
        "prices",
        service,
        [AlternativeFallback(broken), StaticFallback("unknown"), AlternativeFallback(Service())],
        clock=FakeClock(),
    )

    result = await fallback.call("apple")

    assert (result.value, result.source) == ("unknown", STATIC)
    assert result.errors == ((PRIMARY, "ConnectionError"), (ALTERNATIVE, "RuntimeError"))


async def test_cached_value_within_ttl_is_served_fresh() -> None:
    """After a primary failure a value younger than the ttl is served as cached and not stale."""
    clock, service = FakeClock(), Service()
    fallback = cached_chain(clock, service)
    await fallback.call("apple")
    service.up = False
    clock.advance(5)

    result = await fallback.call("apple")

    assert (result.value, result.source, result.stale) == ("price:apple", CACHED, False)
    assert service.calls == ["apple", "apple"]  # the primary is always tried first


async def test_cached_value_past_ttl_is_marked_stale() -> None:
    """A cached value older than the ttl but within max staleness is served marked stale."""
    clock, service = FakeClock(), Service()
    fallback = cached_chain(clock, service)
    await fallback.call("apple")
    service.up = False
    clock.advance(60)

    result = await fallback.call("apple")

    assert (result.value, result.source, result.stale) == ("price:apple", CACHED, True)
    assert fallback.stats().stale == 1


async def test_cached_value_past_max_staleness_is_not_served() -> None:
    """A cached value older than max staleness is skipped and the next strategy serves."""
    clock, service = FakeClock(), Service()
    fallback = cached_chain(clock, service)
    await fallback.call("apple")
    service.up = False
    clock.advance(60.5)

    result = await fallback.call("apple")

    assert (result.value, result.source) == ("unknown", STATIC)
    assert result.errors == ((PRIMARY, "ConnectionError"), (CACHED, "CacheMissError"))


async def test_cache_is_keyed_by_arguments() -> None:
    """The cache never answers one argument with the value remembered for another."""
    clock, service = FakeClock(), Service()
    fallback = cached_chain(clock, service)
    await fallback.call("apple")
    service.up = False

    result = await fallback.call("pear")

    assert (result.value, result.source) == ("unknown", STATIC)


async def test_cache_keeps_at_most_max_entries() -> None:
    """Beyond max_entries the oldest stored key is evicted."""
    service = Service()
    fallback = Fallback(
        "prices", service, [CachedFallback(10, 60, max_entries=1)], clock=FakeClock()
    )
    await fallback.call("apple")
    await fallback.call("pear")
    service.up = False

    assert (await fallback.call("pear")).source is CACHED
    with pytest.raises(FallbackExhaustedError):
        await fallback.value("apple")


async def test_alternative_service_gets_the_same_arguments() -> None:
    """When the primary fails, the alternative service answers the same call."""
    primary, secondary = Service(), Service("mirror")
    primary.up = False
    fallback = Fallback("prices", primary, [AlternativeFallback(secondary)], clock=FakeClock())

    result = await fallback.call("apple")

    assert (result.value, result.source, result.stale) == ("mirror:apple", ALTERNATIVE, False)
    assert secondary.calls == ["apple"]


async def test_static_factory_stubs_from_the_arguments() -> None:
    """A static factory builds the default from the call's arguments."""
    primary = Service()
    primary.up = False
    static = StaticFallback.from_factory(lambda item: f"no price for {item}")
    fallback = Fallback("prices", primary, [static], clock=FakeClock())

    assert await fallback.value("apple") == "no price for apple"


async def test_exhausted_chain_raises_with_every_error() -> None:
    """value() raises FallbackExhaustedError carrying each source's error, the last as cause."""
    primary = Service()
    primary.up = False
    fallback = Fallback(
        "prices",
        primary,
        [CachedFallback(10, 60), AlternativeFallback(broken)],
        clock=FakeClock(),
    )

    with pytest.raises(FallbackExhaustedError) as caught:
        await fallback.value("apple")

    error = caught.value
    assert error.name == "prices"
    assert error.errors == (
        (PRIMARY, "ConnectionError"),
        (CACHED, "CacheMissError"),
        (ALTERNATIVE, "RuntimeError"),
    )
    assert [type(e) for e in error.exceptions] == [ConnectionError, CacheMissError, RuntimeError]
    assert isinstance(error.__cause__, RuntimeError)


async def test_open_breaker_skips_the_primary() -> None:
    """Once the breaker opens on primary failures, the primary is no longer called at all."""
    clock, service = FakeClock(), Service()
    service.up = False
    breaker = CircuitBreaker("prices", BreakerConfig(window_size=2, minimum_calls=2), clock=clock)
    fallback = Fallback(
        "prices", service, [StaticFallback("unknown")], breaker=breaker, clock=clock
    )
    await fallback.call("apple")
    await fallback.call("apple")

    result = await fallback.call("apple")

    assert service.calls == ["apple", "apple"]
    assert (result.value, result.source) == ("unknown", STATIC)
    assert result.errors == ((PRIMARY, "CircuitOpenError"),)


async def test_exception_outside_fallback_on_propagates() -> None:
    """An error the fallback is not meant to mask reaches the caller, and no strategy runs."""

    async def bad_request(item: str) -> str:
        raise ValueError("no such item")

    fallback = Fallback(
        "prices",
        bad_request,
        [StaticFallback("unknown")],
        fallback_on=(ConnectionError,),
        clock=FakeClock(),
    )

    with pytest.raises(ValueError, match="no such item"):
        await fallback.call("apple")
    assert fallback.stats().served[STATIC] == 0


async def test_cancelled_primary_propagates_without_falling_back() -> None:
    """Cancelling a call re-raises CancelledError and serves no fallback."""
    never = asyncio.Event()

    async def hang(item: str) -> str:
        await never.wait()
        return item

    fallback = Fallback("prices", hang, [StaticFallback("unknown")], clock=FakeClock())
    task = asyncio.create_task(fallback.call("apple"))
    await asyncio.sleep(0)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stats = fallback.stats()
    assert (stats.served[STATIC], stats.failures[PRIMARY]) == (0, 0)


async def test_stats_count_uses_per_source_and_failures() -> None:
    """stats() counts calls, results served by each source, failures by source and exhaustion."""
    clock, service = FakeClock(), Service()
    fallback = Fallback(
        "prices", service, [CachedFallback(10, 60), AlternativeFallback(broken)], clock=clock
    )
    await fallback.call("apple")
    service.up = False
    await fallback.call("apple")
    with pytest.raises(FallbackExhaustedError):
        await fallback.call("pear")

    stats = fallback.stats()
    assert stats.calls == 3
    assert stats.served == {PRIMARY: 1, CACHED: 1, STATIC: 0, ALTERNATIVE: 0}
    assert stats.failures == {PRIMARY: 2, CACHED: 1, STATIC: 0, ALTERNATIVE: 1}
    assert stats.exhausted == 1


def test_cache_rejects_ttl_above_max_staleness() -> None:
    """A ttl longer than the maximum staleness is a configuration error."""
    with pytest.raises(ValueError, match="need 0 <= ttl_seconds <= max_staleness_seconds"):
        CachedFallback(ttl_seconds=61, max_staleness_seconds=60)


# -- partial failure ---------------------------------------------------------------------------


async def value_of(v: int) -> int:
    """A component that answers at once."""
    return v


async def explode() -> int:
    """A component that raises."""
    raise ValueError("bad component")


async def hang() -> int:
    """A component that never answers."""
    await asyncio.Event().wait()
    return 0


async def test_all_components_ok_is_healthy() -> None:
    """When every component answers, the run is healthy with every value."""
    handler = PartialFailureHandler("page", min_success_rate=0.5)

    result = await handler.run({"a": lambda: value_of(1), "b": lambda: value_of(2)})

    assert (result.status, result.ok, result.success_rate) == (PartialStatus.HEALTHY, True, 1.0)
    assert result.values == {"a": 1, "b": 2}
    assert {n: c.state for n, c in result.components.items()} == {
        "a": ComponentState.OK,
        "b": ComponentState.OK,
    }


async def test_failing_component_is_isolated_and_run_is_degraded() -> None:
    """One component's exception is reported for it alone; the others' values are kept."""
    handler = PartialFailureHandler("page", min_success_rate=0.5)

    result = await handler.run({"a": lambda: value_of(1), "b": explode})

    assert (result.status, result.ok) == (PartialStatus.DEGRADED, True)
    assert result.values == {"a": 1}
    failed = result.components["b"]
    assert (failed.state, failed.error) == (ComponentState.FAILED, "ValueError")
    assert isinstance(failed.exception, ValueError)


async def test_success_rate_below_minimum_fails_the_run() -> None:
    """When fewer components succeed than min_success_rate asks, the run is failed and not ok."""
    handler = PartialFailureHandler("page", min_success_rate=0.75)

    result = await handler.run({"a": lambda: value_of(1), "b": explode, "c": explode})

    assert (result.status, result.ok) == (PartialStatus.FAILED, False)
    assert result.success_rate == pytest.approx(1 / 3)


async def test_per_component_timeout_marks_only_that_component() -> None:
    """A component past its own timeout is timed_out; components without one still finish."""
    handler = PartialFailureHandler("page", min_success_rate=0.5)
    release = asyncio.Event()

    async def waits_for_release() -> int:
        await release.wait()
        return 2

    async def releases() -> int:
        await asyncio.sleep(0)
        release.set()
        return 3

    result = await handler.run(
        {"stuck": hang, "waiter": waits_for_release, "setter": releases},
        timeout_seconds={"stuck": 0.0, "waiter": 5.0},
    )

    stuck = result.components["stuck"]
    assert (stuck.state, stuck.error) == (ComponentState.TIMED_OUT, "TimeoutError")
    assert result.values == {"waiter": 2, "setter": 3}  # also shows they ran concurrently


async def test_single_timeout_applies_to_each_component() -> None:
    """A scalar timeout limits every component; the ones that answer in time are ok."""
    handler = PartialFailureHandler("page", min_success_rate=0.5)

    result = await handler.run({"a": lambda: value_of(1), "stuck": hang}, timeout_seconds=0.0)

    assert result.components["stuck"].state is ComponentState.TIMED_OUT
    assert result.values == {"a": 1}


async def test_components_own_timeout_error_is_a_failure() -> None:
    """A TimeoutError raised by the component itself is failed, not timed_out."""

    async def own_timeout() -> int:
        raise TimeoutError("upstream said so")

    handler = PartialFailureHandler("page", min_success_rate=0.5)

    result = await handler.run({"a": own_timeout, "b": lambda: value_of(1)}, timeout_seconds=5.0)

    assert result.components["a"].state is ComponentState.FAILED


async def test_cancelling_the_run_cancels_components_and_propagates() -> None:
    """Cancelling run() cancels every running component and re-raises CancelledError."""
    cancelled: list[str] = []

    async def tracked() -> int:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("tracked")
            raise
        return 0

    handler = PartialFailureHandler("page", min_success_rate=0.5)
    task = asyncio.create_task(handler.run({"a": tracked, "b": hang}))
    await asyncio.sleep(0)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert cancelled == ["tracked"]


async def test_component_durations_use_the_injected_clock() -> None:
    """Each component's duration is measured on the handler's clock."""
    clock = FakeClock()

    async def takes_two_seconds() -> int:
        clock.advance(2)
        return 1

    handler = PartialFailureHandler("page", min_success_rate=1.0, clock=clock)

    result = await handler.run({"a": takes_two_seconds})

    assert result.components["a"].duration_seconds == 2.0


async def test_partial_stats_count_runs_and_component_endings() -> None:
    """stats() counts runs by status and each component's endings by state."""
    handler = PartialFailureHandler("page", min_success_rate=0.5)
    await handler.run({"a": lambda: value_of(1), "b": explode})
    await handler.run({"a": lambda: value_of(1), "b": lambda: value_of(2)})
    await handler.run({"a": explode, "b": hang}, timeout_seconds={"b": 0.0})

    stats = handler.stats()
    assert stats.runs == {
        PartialStatus.HEALTHY: 1,
        PartialStatus.DEGRADED: 1,
        PartialStatus.FAILED: 1,
    }
    assert stats.components["b"] == {
        ComponentState.OK: 1,
        ComponentState.FAILED: 1,
        ComponentState.TIMED_OUT: 1,
    }


async def test_no_components_is_an_error() -> None:
    """Running nothing raises ValueError rather than reporting a vacuous verdict."""
    handler = PartialFailureHandler("page", min_success_rate=0.5)

    with pytest.raises(ValueError, match="no components to run"):
        await handler.run({})


def test_min_success_rate_must_be_a_fraction() -> None:
    """A percentage passed as min_success_rate is rejected."""
    with pytest.raises(ValueError, match=r"must be a fraction in \(0, 1\]"):
        PartialFailureHandler("page", min_success_rate=50)
