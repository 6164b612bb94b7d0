"""Properties of every strategy over the memory storage, for any arrival sequence and costs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.limits import Limit, MemoryStorage, Outcome, Strategy, SyncLimiter
from agent.limits.policy import TAT_STRATEGIES, interval_us

PERIOD = 1.0
PERIOD_US = 1_000_000

# Arrivals: (gap in µs since the previous one, cost); gaps span several periods.
arrivals = st.lists(st.tuples(st.integers(0, 400_000), st.integers(0, 4)), min_size=1, max_size=60)
limits = st.builds(
    Limit,
    st.integers(1, 6),
    st.just(PERIOD),
    st.sampled_from(list(Strategy)),
)


def run(limit: Limit, sequence: Sequence[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """(time in µs, cost, admitted) for each arrival, deciding at the arrival's time."""
    now = [1_000_000_000]
    limiter = SyncLimiter("p", limit, MemoryStorage(lambda: now[0] * 1000))
    out = []
    for gap, cost in sequence:
        now[0] += gap
        out.append((now[0], cost, limiter.decide("k", cost).allowed))
    return out


def _admitted_between(decided: list[tuple[int, int, bool]], start: int, end: int) -> int:
    """Cost admitted at times in [start, end)."""
    return sum(cost for at, cost, ok in decided if ok and start <= at < end)


@settings(max_examples=150, deadline=None)
@given(limits, arrivals)
def test_admissions_never_exceed_the_documented_bound(
    limit: Limit, sequence: list[tuple[int, int]]
) -> None:
    """Admitted cost stays within each strategy's bound in every window (docs/limits.md)."""
    decided = run(limit, sequence)
    times = [at for at, _, _ in decided]
    for at in times:
        if limit.strategy in TAT_STRATEGIES:
            # GCRA: at most burst + elapsed / interval over any closed interval [t1, t2].
            for later in times:
                if later >= at:
                    admitted = _admitted_between(decided, at, later + 1)
                    assert admitted * interval_us(limit) <= (
                        limit.capacity * interval_us(limit) + (later - at)
                    )
        elif limit.strategy is Strategy.SLIDING_LOG:
            # Exact: at most `limit` in any interval of one period.
            assert _admitted_between(decided, at, at + PERIOD_US) <= limit.limit
        else:
            # Both window counters: at most `limit` per aligned window, 2x across a boundary.
            start = at - at % PERIOD_US
            assert _admitted_between(decided, start, start + PERIOD_US) <= limit.limit
            assert _admitted_between(decided, at, at + PERIOD_US) <= 2 * limit.limit


@settings(max_examples=150, deadline=None)
@given(limits, arrivals)
def test_denied_requests_never_change_later_admissions(
    limit: Limit, sequence: list[tuple[int, int]]
) -> None:
    """Removing every denied request from a sequence admits exactly the same requests."""
    decided = run(limit, sequence)
    kept: list[tuple[int, int]] = []
    carried = 0
    for (gap, cost), (_, _, ok) in zip(sequence, decided, strict=True):
        carried += gap
        if ok:
            kept.append((carried, cost))
            carried = 0
    again = run(limit, kept)

    assert all(ok for _, _, ok in again)
    assert [(at, cost) for at, cost, ok in decided if ok] == [(at, cost) for at, cost, _ in again]


@settings(max_examples=150, deadline=None)
@given(limits, arrivals)
def test_a_denial_says_exactly_when_the_same_cost_fits(
    limit: Limit, sequence: list[tuple[int, int]]
) -> None:
    """After a denial the same cost is admitted at `retry_after`, and not a moment before."""
    now = [1_000_000_000]
    limiter = SyncLimiter("p", limit, MemoryStorage(lambda: now[0] * 1000))
    for gap, cost in sequence:
        now[0] += gap
        decision = limiter.decide("k", cost)
        if decision.outcome is Outcome.DENIED:
            start = now[0]
            # retry_after is exact in the storage's nanoseconds; this clock moves in whole µs.
            wait = math.ceil(round(decision.retry_after * 1_000_000_000) / 1000)
            assert wait > 0
            now[0] = start + wait - 1
            assert not limiter.decide("k", cost).allowed
            now[0] = start + wait
            assert limiter.decide("k", cost).allowed
            return
