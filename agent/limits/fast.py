"""The memory storage's hot path: each strategy's arithmetic fused with its table and counts.

For a limiter with one limit, `decide(key, cost)` and `admit(key, cost)` are single closures:
a decision through the general path costs about six Python calls, and that is most of the
difference between a sub-microsecond limiter and one that is not. Each closure must decide
exactly as its function in `arithmetic` (tests/unit/limits/test_memory.py holds them equal on
any sequence of calls).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from agent.limits import arithmetic
from agent.limits.counts import Counts
from agent.limits.decision import Decision, Outcome
from agent.limits.errors import LimitError
from agent.limits.policy import MICROS, Limit, Strategy, interval_us
from agent.limits.tables import Generations, Windows

Clock = Callable[[], int]
Never = Callable[[str, int, int], Decision]
# The closures take `Any` cost: they refuse anything but a whole number >= 0 themselves.
Deciders = tuple[Callable[[str, Any], Decision], Callable[[str, Any], bool]]
ALLOWED = Outcome.ALLOWED
DENIED = Outcome.DENIED


def bad_cost(cost: object) -> LimitError:
    """The error for a cost that is not a whole number >= 0 (one limit: no cost per name)."""
    return LimitError(f"cost must be a whole number >= 0, not {cost!r}")


def tat_deciders(
    limit: Limit, table: Generations, clock: Clock, div: int, counts: Counts, never: Never
) -> Deciders:
    """GCRA, token bucket and leaky bucket (`arithmetic.tat`)."""
    interval = interval_us(limit)
    capacity = limit.capacity
    window = capacity * interval
    shaping = limit.strategy is Strategy.LEAKY_BUCKET
    name = limit.name
    period = limit.period_seconds
    share = 1.0 / capacity

    def decide(key: str, cost: int) -> Decision:
        if cost.__class__ is not int or cost < 0:
            raise bad_cost(cost)
        now = clock() // div
        if table.rotate_at <= now:
            table.rotate(now)
        if cost > capacity:
            return never(key, cost, now)
        state = table.current.get(key) or table.previous.get(key)
        base = now if state is None or state < now else state
        new_tat = base + cost * interval
        if new_tat - now > window:
            counts.denied += 1
            counts.peak = 1.0
            return Decision(
                DENIED,
                capacity,
                (window - (base - now)) // interval,
                (new_tat - window - now) / MICROS,
                (base - now) / MICROS,
                0.0,
                name,
                period,
            )
        table.current[key] = new_tat
        counts.allowed += 1
        remaining = (window - (new_tat - now)) // interval
        used = (capacity - remaining) * share
        if used > counts.peak:
            counts.peak = used
        return Decision(
            ALLOWED,
            capacity,
            remaining,
            0.0,
            (new_tat - now) / MICROS,
            (base - now) / MICROS if shaping else 0.0,
            name,
            period,
        )

    def admit(key: str, cost: int) -> bool:
        if cost.__class__ is not int or cost < 0:
            raise bad_cost(cost)
        now = clock() // div
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
            counts.peak = 1.0
            return False
        table.current[key] = new_tat
        counts.allowed += 1
        used = (capacity - (window - (new_tat - now)) // interval) * share
        if used > counts.peak:
            counts.peak = used
        return True

    return decide, admit


def fixed_deciders(
    limit: Limit, table: Windows, clock: Clock, div: int, counts: Counts, never: Never
) -> Deciders:
    """Fixed window (`arithmetic.fixed_window`)."""
    quota = limit.limit
    name = limit.name
    period = limit.period_seconds
    share = 1.0 / quota

    def decide(key: str, cost: int) -> Decision:
        if cost.__class__ is not int or cost < 0:
            raise bad_cost(cost)
        now = clock() // div
        if now >= table.end:
            table.roll(now)
        if cost > quota:
            return never(key, cost, now)
        count = table.current.get(key, 0)
        end = (table.end - now) / MICROS
        if count + cost > quota:
            counts.denied += 1
            counts.peak = 1.0
            return Decision(DENIED, quota, quota - count, end, end, 0.0, name, period)
        count += cost
        table.current[key] = count
        counts.allowed += 1
        if count * share > counts.peak:
            counts.peak = count * share
        return Decision(ALLOWED, quota, quota - count, 0.0, end, 0.0, name, period)

    def admit(key: str, cost: int) -> bool:
        if cost.__class__ is not int or cost < 0:
            raise bad_cost(cost)
        now = clock() // div
        if now >= table.end:
            table.roll(now)
        if cost > quota:
            never(key, cost, now)
            return False
        count = table.current.get(key, 0) + cost
        if count > quota:
            counts.denied += 1
            counts.peak = 1.0
            return False
        table.current[key] = count
        counts.allowed += 1
        if count * share > counts.peak:
            counts.peak = count * share
        return True

    return decide, admit


def sliding_deciders(
    limit: Limit, table: Windows, clock: Clock, div: int, counts: Counts, never: Never
) -> Deciders:
    """Sliding window counter (`arithmetic.sliding_window`)."""
    quota = limit.limit
    period_us = limit.period_us
    full = quota * period_us
    name = limit.name
    period = limit.period_seconds

    def decide(key: str, cost: int) -> Decision:
        if cost.__class__ is not int or cost < 0:
            raise bad_cost(cost)
        now = clock() // div
        if now >= table.end:
            table.roll(now)
        if cost > quota:
            return never(key, cost, now)
        current = table.current.get(key, 0)
        previous = table.previous.get(key, 0)
        elapsed = now - table.start
        room = full - previous * (period_us - elapsed) - current * period_us
        if cost * period_us > room:
            counts.denied += 1
            counts.peak = 1.0
            retry = arithmetic.sliding_retry(current, previous, elapsed, cost, quota, period_us)
            reset = arithmetic.sliding_reset(current, previous, elapsed, period_us)
            return Decision(
                DENIED,
                quota,
                max(0, room // period_us),
                retry / MICROS,
                reset / MICROS,
                0.0,
                name,
                period,
            )
        current += cost
        table.current[key] = current
        counts.allowed += 1
        remaining = (room - cost * period_us) // period_us
        used = 1.0 - remaining / quota
        if used > counts.peak:
            counts.peak = used
        reset = arithmetic.sliding_reset(current, previous, elapsed, period_us)
        return Decision(ALLOWED, quota, remaining, 0.0, reset / MICROS, 0.0, name, period)

    def admit(key: str, cost: int) -> bool:
        if cost.__class__ is not int or cost < 0:
            raise bad_cost(cost)
        now = clock() // div
        if now >= table.end:
            table.roll(now)
        if cost > quota:
            never(key, cost, now)
            return False
        current = table.current.get(key, 0)
        room = (
            full
            - table.previous.get(key, 0) * (period_us - now + table.start)
            - current * period_us
            - cost * period_us
        )
        if room < 0:
            counts.denied += 1
            counts.peak = 1.0
            return False
        table.current[key] = current + cost
        counts.allowed += 1
        used = 1.0 - (room // period_us) / quota
        if used > counts.peak:
            counts.peak = used
        return True

    return decide, admit


def log_deciders(
    limit: Limit, table: Generations, clock: Clock, div: int, counts: Counts, never: Never
) -> Deciders:
    """Sliding log (`arithmetic.sliding_log`)."""
    quota = limit.limit
    period_us = limit.period_us
    name = limit.name
    period = limit.period_seconds
    reset = period_us / MICROS
    share = 1.0 / quota

    def trimmed(key: str, now: int) -> list[Any]:
        state: list[Any] | None = table.current.get(key) or table.previous.get(key)
        if state is None:
            state = [deque(), 0]
            table.current[key] = state
            return state
        entries = state[0]
        horizon = now - period_us
        while entries and entries[0][0] <= horizon:
            state[1] -= entries.popleft()[1]
        return state

    def decide(key: str, cost: int) -> Decision:
        if cost.__class__ is not int or cost < 0:
            raise bad_cost(cost)
        now = clock() // div
        if table.rotate_at <= now:
            table.rotate(now)
        if cost > quota:
            return never(key, cost, now)
        state = trimmed(key, now)
        total: int = state[1]
        if total + cost > quota:
            counts.denied += 1
            counts.peak = 1.0
            retry = arithmetic.log_retry(state, now, cost, quota, period_us)
            last = state[0][-1][0]
            return Decision(
                DENIED,
                quota,
                quota - total,
                retry / MICROS,
                (last + period_us - now) / MICROS,
                0.0,
                name,
                period,
            )
        state[0].append((now, cost))
        state[1] = total = total + cost
        table.current[key] = state
        counts.allowed += 1
        if total * share > counts.peak:
            counts.peak = total * share
        return Decision(ALLOWED, quota, quota - total, 0.0, reset, 0.0, name, period)

    def admit(key: str, cost: int) -> bool:
        if cost.__class__ is not int or cost < 0:
            raise bad_cost(cost)
        now = clock() // div
        if table.rotate_at <= now:
            table.rotate(now)
        if cost > quota:
            never(key, cost, now)
            return False
        state = trimmed(key, now)
        total = state[1] + cost
        if total > quota:
            counts.denied += 1
            counts.peak = 1.0
            return False
        state[0].append((now, cost))
        state[1] = total
        table.current[key] = state
        counts.allowed += 1
        if total * share > counts.peak:
            counts.peak = total * share
        return True

    return decide, admit
