"""The memory storage and both limiter faces: fused hot paths, all-or-nothing, expiry, counts."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.limits import (
    Limit,
    Limiter,
    LimitError,
    MemoryStorage,
    Outcome,
    Strategy,
    SyncLimiter,
)
from tests.harness.wait import MicroClock

arrivals = st.lists(
    st.tuples(st.integers(0, 400_000), st.integers(0, 5), st.sampled_from(["a", "b"])),
    min_size=1,
    max_size=50,
)
limits = st.builds(
    Limit,
    st.integers(1, 6),
    st.sampled_from([0.5, 1.0, 3.0]),
    st.sampled_from(list(Strategy)),
)
# Never the binding limit: lets a two-limit limiter report `limit`'s own decision in parts[0].
WIDE = Limit(10**9, 1.0, Strategy.GCRA, name="wide")


@settings(max_examples=200, deadline=None)
@given(limits, arrivals)
def test_the_fused_path_decides_as_the_pure_arithmetic(
    limit: Limit, sequence: list[tuple[int, int, str]]
) -> None:
    """One limit's fused closure gives the same decision, field by field, as `arithmetic`."""
    clock = MicroClock()
    storage = MemoryStorage(clock)
    fused = SyncLimiter("fused", limit, storage)
    general = SyncLimiter("general", [limit, WIDE], storage)
    for gap, cost, key in sequence:
        clock.now += gap
        one = fused.decide(key, cost)
        both = general.decide(key, cost)
        assert one == both.parts[0]
        assert one.outcome == both.outcome


@settings(max_examples=100, deadline=None)
@given(limits, arrivals)
def test_sync_and_async_faces_decide_alike(
    limit: Limit, sequence: list[tuple[int, int, str]]
) -> None:
    """`SyncLimiter` and `Limiter` give the same decisions for the same calls at the same times."""
    clock = MicroClock()
    sync = SyncLimiter("s", limit, MemoryStorage(clock))
    asynchronous = Limiter("a", limit, MemoryStorage(clock))

    async def decide(key: str, cost: int) -> tuple[object, bool]:
        return await asynchronous.decide(key, cost), await asynchronous.hit(key, 0)

    for gap, cost, key in sequence:
        clock.now += gap
        expected = sync.decide(key, cost)
        got, _ = asyncio.run(decide(key, cost))
        assert got == expected
        assert sync.hit(key, 0) is True
    assert sync.stats().decisions == asynchronous.stats().decisions


@settings(max_examples=100, deadline=None)
@given(st.lists(limits, min_size=1, max_size=2, unique_by=lambda limit: limit.strategy), arrivals)
def test_hit_admits_as_decide_on_both_faces(
    chosen: list[Limit], sequence: list[tuple[int, int, str]]
) -> None:
    """`hit` (the fused coroutine, the sync closure) admits exactly what `decide` admits."""
    named = [
        Limit(limit.limit, limit.period_seconds, limit.strategy, name=f"l{index}")
        for index, limit in enumerate(chosen)
    ]
    clock = MicroClock()
    deciding = SyncLimiter("d", named, MemoryStorage(clock))
    sync = SyncLimiter("s", named, MemoryStorage(clock))
    asynchronous = Limiter("a", named, MemoryStorage(clock))
    for gap, cost, key in sequence:
        clock.now += gap
        expected = deciding.decide(key, cost).allowed
        assert sync.hit(key, cost) is expected
        assert asyncio.run(asynchronous.hit(key, cost)) is expected
    assert sync.stats().decisions == asynchronous.stats().decisions == deciding.stats().decisions


def test_several_limits_admit_all_or_nothing() -> None:
    """A request denied by one limit spends nothing from the others."""
    clock = MicroClock()
    limiter = SyncLimiter(
        "api",
        [Limit(5, 60, name="requests"), Limit(10, 60, Strategy.FIXED_WINDOW, name="tokens")],
        MemoryStorage(clock),
    )

    assert limiter.decide("client", {"requests": 1, "tokens": 6}).allowed
    denied = limiter.decide("client", {"requests": 1, "tokens": 5})
    assert denied.outcome is Outcome.DENIED
    assert denied.policy == "tokens"
    assert [part.remaining for part in denied.parts] == [4, 4]
    # The request denied by `tokens` spent nothing of `requests`.
    assert limiter.decide("client", {"requests": 4, "tokens": 4}).allowed
    assert limiter.decide("client", 0).remaining == 0
    with pytest.raises(LimitError, match="costs must name each limit once"):
        limiter.decide("client", {"requests": 1})


def test_a_cost_that_can_never_fit_gets_its_own_outcome() -> None:
    """A cost above the capacity is `never`, with an infinite wait and no Retry-After header."""
    limiter = SyncLimiter("api", Limit(5, 1, burst=8), MemoryStorage(MicroClock()))

    decision = limiter.decide("k", 9)

    assert decision.outcome is Outcome.NEVER
    assert not decision.allowed
    assert decision.retry_after == float("inf")
    assert decision.retry_after_header is None
    assert decision.remaining == 8
    assert limiter.decide("k", 8).allowed
    assert limiter.stats().decisions[Outcome.NEVER] == 1


def test_retry_after_header_rounds_up_and_is_never_zero() -> None:
    """`Retry-After` is whole seconds rounded up, at least 1 for any denial."""
    clock = MicroClock()
    limiter = SyncLimiter("api", Limit(1, 2.5, Strategy.FIXED_WINDOW), MemoryStorage(clock))
    clock.now = 10_000_000
    assert limiter.decide("k").allowed
    clock.now += 2_499_999
    denied = limiter.decide("k")
    assert denied.retry_after == pytest.approx(1e-6)
    assert denied.retry_after_header == 1
    assert limiter.decide("k").retry_after_header == 1
    clock.now = 10_000_000 + 1
    assert SyncLimiter("x", Limit(1, 2.5), MemoryStorage(clock)).decide("k").allowed


def test_leaky_bucket_spaces_admissions_out() -> None:
    """The leaky bucket admits a burst but asks each request to wait for its slot."""
    limiter = SyncLimiter("shape", Limit(4, 1, Strategy.LEAKY_BUCKET), MemoryStorage(MicroClock()))

    delays = [limiter.decide("k").delay for _ in range(4)]

    assert delays == [0.0, 0.25, 0.5, 0.75]
    assert not limiter.decide("k").allowed


async def test_one_limit_takes_its_cost_by_name_too() -> None:
    """`{name: cost}` spends like `cost` on a one-limit limiter, as on the Redis storage."""
    limiter = Limiter("api", Limit(3, 60, Strategy.SLIDING_LOG, name="calls"))
    assert (await limiter.decide("k", {"calls": 2})).remaining == 1
    assert await limiter.hit("k", {"calls": 1})
    assert not SyncLimiter("s", Limit(1, 60)).hit("k", {"default": 2})
    with pytest.raises(LimitError, match="costs must name each limit once"):
        await limiter.hit("k", {"other": 1})


def test_cost_zero_reads_without_spending() -> None:
    """A cost of 0 is always admitted and reports what is left."""
    limiter = SyncLimiter("api", Limit(3, 1), MemoryStorage(MicroClock()))
    assert limiter.decide("k", 2).remaining == 1
    assert limiter.decide("k", 0).remaining == 1
    assert limiter.decide("k", 0).remaining == 1


@pytest.mark.parametrize("cost", [-1, 1.5, True, "1", None])
async def test_a_bad_cost_is_refused_with_a_clear_error(cost: object) -> None:
    """A cost that is not a whole number >= 0 raises `LimitError` and changes nothing."""
    limiter = Limiter("api", Limit(1, 1))
    with pytest.raises(LimitError, match="cost must be a whole number >= 0"):
        await limiter.decide("k", cost)  # type: ignore[arg-type]
    with pytest.raises(LimitError, match="cost must be a whole number >= 0"):
        await limiter.hit("k", cost)  # type: ignore[arg-type]
    assert await limiter.hit("k")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0, "period_seconds": 1}, "limit must be a whole number >= 1, not 0"),
        ({"limit": 1.5, "period_seconds": 1}, "limit must be a whole number >= 1, not 1.5"),
        ({"limit": 1, "period_seconds": 0}, "period_seconds must be between 0.001 and"),
        ({"limit": 1, "period_seconds": float("nan")}, "period_seconds must be between"),
        ({"limit": 1, "period_seconds": 1, "burst": 0}, "burst must be a whole number >= 1"),
        (
            {"limit": 1, "period_seconds": 1, "strategy": "fixed_window", "burst": 2},
            "burst applies to gcra, token_bucket and leaky_bucket, not fixed_window",
        ),
        ({"limit": 1, "period_seconds": 1, "name": "a b"}, "name must be 1-64 letters"),
        ({"limit": 1, "period_seconds": 1, "strategy": "cell"}, "'cell' is not a valid Strategy"),
    ],
)
def test_a_bad_limit_is_refused_with_its_reason(kwargs: dict[str, object], message: str) -> None:
    """Each invalid field of a limit names itself and the value in the error."""
    with pytest.raises(ValueError, match=message):
        Limit(**kwargs)  # type: ignore[arg-type]


def test_rates_parse_from_text() -> None:
    """`100/minute` and `10 per 5 seconds` become limits; anything else is refused."""
    assert Limit.parse("100/minute") == Limit(100, 60)
    assert Limit.parse("10 per 5 seconds", Strategy.SLIDING_LOG) == Limit(
        10, 5, Strategy.SLIDING_LOG
    )
    with pytest.raises(LimitError, match="is not a rate"):
        Limit.parse("fast")


def test_limits_of_one_limiter_need_distinct_names() -> None:
    """Two limits with one name would be indistinguishable in headers and parts."""
    with pytest.raises(LimitError, match="distinct names"):
        SyncLimiter("api", [Limit(1, 1), Limit(2, 1)])
    with pytest.raises(LimitError, match="one or more Limit"):
        SyncLimiter("api", [])


@pytest.mark.parametrize("strategy", list(Strategy))
def test_states_expire_without_a_sweeper(strategy: Strategy) -> None:
    """Keys not seen for two horizons are dropped by later decisions; recent ones are kept."""
    clock = MicroClock()
    limiter = SyncLimiter("api", Limit(5, 1, strategy), MemoryStorage(clock))
    binding = limiter._binding  # the storage's own count of states
    for index in range(100):
        limiter.decide(f"old-{index}")
    assert binding.states() == 100
    for _ in range(3):
        clock.now += 1_100_000
        limiter.decide("recent")
    assert binding.states() <= 2
    assert limiter.decide("recent", 0).remaining >= 3


def test_scaling_lowers_the_rate_and_keeps_state() -> None:
    """`scale(0.5)` halves the quota from now on; bad factors are refused."""
    limiter = SyncLimiter("api", Limit(10, 60, Strategy.FIXED_WINDOW), MemoryStorage(MicroClock()))
    assert limiter.decide("k", 4).allowed
    limiter.scale(0.5)
    assert limiter.limits[0].limit == 5
    assert limiter.decide("k").remaining == 0
    assert not limiter.decide("k").allowed
    assert limiter.factor == 0.5
    for factor in (0, 1.5, float("nan")):
        with pytest.raises(LimitError, match=r"a scale factor is in \(0, 1\]"):
            limiter.scale(factor)


def test_stats_count_outcomes_and_the_utilization() -> None:
    """Counts by outcome grow; utilization is the busiest key's share, 1 for a period after a
    refusal, and falls as the keys' states drain."""
    clock = MicroClock()
    limiter = SyncLimiter("api", Limit(4, 60, Strategy.FIXED_WINDOW), MemoryStorage(clock))
    limiter.decide("a")
    limiter.decide("b", 3)
    stats = limiter.stats()
    assert stats.decisions[Outcome.ALLOWED] == 2
    assert stats.utilization == 0.75
    assert limiter.utilization() == 0.75
    limiter.decide("b", 2)
    assert limiter.stats().decisions[Outcome.DENIED] == 1
    assert limiter.utilization() == 1.0
    assert limiter.utilization() == 1.0  # the period before still had the refusal
    clock.now += 60_000_000
    assert limiter.utilization() == 0.0
