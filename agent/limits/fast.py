"""The memory storage's hot path: each strategy's arithmetic fused with its table and counts.

The closures only count outcomes; how much of its quota the busiest key uses is read from the
tables when metrics are collected (`MemoryBinding.utilization`), not paid on every decision.

For a limiter with one limit, `decide(key, cost)` and `admit(key, cost)` are single closures:
a decision through the general path costs about six Python calls, and that is most of the
difference between a sub-microsecond limiter and one that is not. Each closure must decide
exactly as its function in `arithmetic` (tests/unit/limits/test_memory.py holds them equal on
any sequence of calls).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from agent.limits import arithmetic
from agent.limits.counts import Counts
from agent.limits.decision import Decision, Outcome
from agent.limits.errors import LimitError
from agent.limits.policy import NANOS, Limit, Strategy, costs, interval_ns, period_ns
from agent.limits.tables import Generations, Windows

Clock = Callable[[], int]
Never = Callable[[str, int, int], Decision]
# decide, admit, and admit as a coroutine function (the asyncio face's `hit`). The closures take
# `Any` cost: they refuse anything but a whole number >= 0 themselves.
Deciders = tuple[
    Callable[[str, Any], Decision],
    Callable[[str, Any], bool],
    Callable[..., Coroutine[Any, Any, bool]],
]
ALLOWED = Outcome.ALLOWED
# Waits are rounded up to whole microseconds, as the Redis storage counts them.
GRAIN = 1000
# The unit cost, compared by identity: CPython keeps one object for each small int, so
# `cost is ONE` holds for every int 1 and for nothing else (not True, not 1.0), which lets the
# commonest call skip the type check.
ONE = 1
DENIED = Outcome.DENIED


def single_cost(name: str) -> Callable[[object], int]:
    """The slow path of a cost that is not a plain whole number: `{name: cost}` is accepted
    (as the Redis storage does), anything else is refused with `LimitError`."""

    def only(cost: object) -> int:
        if isinstance(cost, Mapping):
            return costs(cost, [name])[0]
        raise bad_cost(cost)

    return only


def bad_cost(cost: object) -> LimitError:
    """The error for a cost that is not a whole number >= 0 (one limit: no cost per name)."""
    return LimitError(f"cost must be a whole number >= 0, not {cost!r}")


def tat_deciders(
    limit: Limit, table: Generations, clock: Clock, counts: Counts, never: Never
) -> Deciders:
    """GCRA, token bucket and leaky bucket (`arithmetic.tat`)."""
    only = single_cost(limit.name)
    interval = interval_ns(limit)
    capacity = limit.capacity
    window = capacity * interval
    shaping = limit.strategy is Strategy.LEAKY_BUCKET
    name = limit.name
    period = limit.period_seconds

    def decide(key: str, cost: int) -> Decision:
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if table.rotate_at <= now:
            table.rotate(now)
        if cost > capacity:
            return never(key, cost, now)
        state = table.current.get(key) or table.previous.get(key)
        base = now if state is None or state < now else state
        new_tat = base + cost * interval
        if new_tat - now > window:
            counts.denied += 1
            return Decision(
                DENIED,
                capacity,
                (window - (base - now)) // interval,
                (new_tat - window - now) / NANOS,
                (base - now) / NANOS,
                0.0,
                name,
                period,
            )
        table.current[key] = new_tat
        counts.allowed += 1
        remaining = (window - (new_tat - now)) // interval
        return Decision(
            ALLOWED,
            capacity,
            remaining,
            0.0,
            (new_tat - now) / NANOS,
            (base - now) / NANOS if shaping else 0.0,
            name,
            period,
        )

    def admit(key: str, cost: int) -> bool:
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if table.rotate_at <= now:
            table.rotate(now)
        if cost > capacity:
            never(key, cost, now)
            return False
        state = table.current.get(key) or table.previous.get(key)
        base = now if state is None or state < now else state
        new_tat = base + cost * interval
        if new_tat - now > window:
            counts.denied += 1
            return False
        table.current[key] = new_tat
        counts.allowed += 1
        return True

    async def hit(key: str, cost: int = 1) -> bool:
        # `admit` as a coroutine function: `Limiter.hit` itself, one call instead of two.
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if table.rotate_at <= now:
            table.rotate(now)
        if cost > capacity:
            never(key, cost, now)
            return False
        state = table.current.get(key) or table.previous.get(key)
        base = now if state is None or state < now else state
        new_tat = base + cost * interval
        if new_tat - now > window:
            counts.denied += 1
            return False
        table.current[key] = new_tat
        counts.allowed += 1
        return True

    return decide, admit, hit


def fixed_deciders(
    limit: Limit, table: Windows, clock: Clock, counts: Counts, never: Never
) -> Deciders:
    """Fixed window (`arithmetic.fixed_window`)."""
    only = single_cost(limit.name)
    quota = limit.limit
    name = limit.name
    period = limit.period_seconds

    def decide(key: str, cost: int) -> Decision:
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if now >= table.end:
            table.roll(now)
        if cost > quota:
            return never(key, cost, now)
        count = table.current.get(key, 0)
        end = (table.end - now) / NANOS
        if count + cost > quota:
            counts.denied += 1
            return Decision(DENIED, quota, quota - count, end, end, 0.0, name, period)
        count += cost
        table.current[key] = count
        counts.allowed += 1
        return Decision(ALLOWED, quota, quota - count, 0.0, end, 0.0, name, period)

    def admit(key: str, cost: int) -> bool:
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if now >= table.end:
            table.roll(now)
        if cost > quota:
            never(key, cost, now)
            return False
        count = table.current.get(key, 0) + cost
        if count > quota:
            counts.denied += 1
            return False
        table.current[key] = count
        counts.allowed += 1
        return True

    async def hit(key: str, cost: int = 1) -> bool:
        # `admit` as a coroutine function: `Limiter.hit` itself, one call instead of two.
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if now >= table.end:
            table.roll(now)
        if cost > quota:
            never(key, cost, now)
            return False
        count = table.current.get(key, 0) + cost
        if count > quota:
            counts.denied += 1
            return False
        table.current[key] = count
        counts.allowed += 1
        return True

    return decide, admit, hit


def sliding_deciders(
    limit: Limit, table: Windows, clock: Clock, counts: Counts, never: Never
) -> Deciders:
    """Sliding window counter (`arithmetic.sliding_window`)."""
    only = single_cost(limit.name)
    quota = limit.limit
    span = period_ns(limit)
    full = quota * span
    name = limit.name
    period = limit.period_seconds

    def decide(key: str, cost: int) -> Decision:
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if now >= table.end:
            table.roll(now)
        if cost > quota:
            return never(key, cost, now)
        current = table.current.get(key, 0)
        previous = table.previous.get(key, 0)
        elapsed = now - table.start
        room = full - previous * (span - elapsed) - current * span
        if cost * span > room:
            counts.denied += 1
            retry = arithmetic.sliding_retry(current, previous, elapsed, cost, quota, span, GRAIN)
            reset = arithmetic.sliding_reset(current, previous, elapsed, span)
            return Decision(
                DENIED,
                quota,
                max(0, room // span),
                retry / NANOS,
                reset / NANOS,
                0.0,
                name,
                period,
            )
        current += cost
        table.current[key] = current
        counts.allowed += 1
        remaining = (room - cost * span) // span
        reset = arithmetic.sliding_reset(current, previous, elapsed, span)
        return Decision(ALLOWED, quota, remaining, 0.0, reset / NANOS, 0.0, name, period)

    def admit(key: str, cost: int) -> bool:
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if now >= table.end:
            table.roll(now)
        current = table.current.get(key, 0)
        if current + cost > quota and cost <= quota:
            # This window alone is over quota, whatever the previous one weighs.
            counts.denied += 1
            return False
        if cost > quota:
            never(key, cost, now)
            return False
        room = (
            full
            - table.previous.get(key, 0) * (span - now + table.start)
            - current * span
            - cost * span
        )
        if room < 0:
            counts.denied += 1
            return False
        table.current[key] = current + cost
        counts.allowed += 1
        return True

    async def hit(key: str, cost: int = 1) -> bool:
        # `admit` as a coroutine function: `Limiter.hit` itself, one call instead of two.
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if now >= table.end:
            table.roll(now)
        current = table.current.get(key, 0)
        if current + cost > quota and cost <= quota:
            # This window alone is over quota, whatever the previous one weighs.
            counts.denied += 1
            return False
        if cost > quota:
            never(key, cost, now)
            return False
        room = (
            full
            - table.previous.get(key, 0) * (span - now + table.start)
            - current * span
            - cost * span
        )
        if room < 0:
            counts.denied += 1
            return False
        table.current[key] = current + cost
        counts.allowed += 1
        return True

    return decide, admit, hit


def log_deciders(
    limit: Limit, table: Generations, clock: Clock, counts: Counts, never: Never
) -> Deciders:
    """Sliding log (`arithmetic.sliding_log`): when each unit admitted leaves, oldest first."""
    only = single_cost(limit.name)
    # Closure cells, not globals or builtins: each of those is a dictionary lookup per call.
    one = ONE
    size = len
    quota = limit.limit
    span = period_ns(limit)
    name = limit.name
    period = limit.period_seconds
    reset = span / NANOS

    def decide(key: str, cost: int) -> Decision:
        if cost.__class__ is not int or cost < 0:
            cost = only(cost)
        now = clock()
        if table.rotate_at <= now:
            table.rotate(now)
        if cost > quota:
            return never(key, cost, now)
        entries = table.current.get(key)
        if entries is None:
            entries = table.previous.get(key)
            if entries is None:
                entries = deque()
            table.current[key] = entries
        while entries and entries[0] <= now:
            entries.popleft()
        total = len(entries)
        if total + cost > quota:
            counts.denied += 1
            retry = entries[total + cost - quota - 1] - now
            return Decision(
                DENIED,
                quota,
                quota - total,
                retry / NANOS,
                (entries[-1] - now) / NANOS,
                0.0,
                name,
                period,
            )
        arithmetic.log_append(entries, now + span, cost)
        counts.allowed += 1
        return Decision(ALLOWED, quota, quota - total - cost, 0.0, reset, 0.0, name, period)

    def admit(key: str, cost: int) -> bool:
        now = clock()
        if cost is one:
            entries = table.current.get(key)
            if entries is not None and size(entries) >= quota and entries[0] > now:
                # Full, with nothing old enough to leave: a refusal, without the trimming.
                counts.denied += 1
                return False
        elif cost.__class__ is not int or cost < 0:
            cost = only(cost)
        if table.rotate_at <= now:
            table.rotate(now)
        if cost > quota:
            never(key, cost, now)
            return False
        entries = table.current.get(key)
        if entries is None:
            entries = table.previous.get(key)
            if entries is None:
                entries = deque()
            table.current[key] = entries
        while entries and entries[0] <= now:
            entries.popleft()
        if len(entries) + cost > quota:
            counts.denied += 1
            return False
        if cost == 1:
            entries.append(now + span)
        else:
            arithmetic.log_append(entries, now + span, cost)
        counts.allowed += 1
        return True

    async def hit(key: str, cost: int = 1) -> bool:
        # `admit` as a coroutine function: `Limiter.hit` itself, one call instead of two.
        now = clock()
        if cost is one:
            entries = table.current.get(key)
            if entries is not None and size(entries) >= quota and entries[0] > now:
                # Full, with nothing old enough to leave: a refusal, without the trimming.
                counts.denied += 1
                return False
        elif cost.__class__ is not int or cost < 0:
            cost = only(cost)
        if table.rotate_at <= now:
            table.rotate(now)
        if cost > quota:
            never(key, cost, now)
            return False
        entries = table.current.get(key)
        if entries is None:
            entries = table.previous.get(key)
            if entries is None:
                entries = deque()
            table.current[key] = entries
        while entries and entries[0] <= now:
            entries.popleft()
        if len(entries) + cost > quota:
            counts.denied += 1
            return False
        if cost == 1:
            entries.append(now + span)
        else:
            arithmetic.log_append(entries, now + span, cost)
        counts.allowed += 1
        return True

    return decide, admit, hit
