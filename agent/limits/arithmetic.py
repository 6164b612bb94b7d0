"""The strategies as pure arithmetic on integer times: state in, verdict and state out.

Times are whole units of the storage's clock: nanoseconds in memory, microseconds in Redis
(whose `TIME` gives them), with periods and intervals in the same unit. Every function takes the
key's current state (None for a key at rest), the time `now` and a `cost`, and returns
`(admitted, remaining, retry, reset, delay, state)`, the three durations in that unit. A denial
returns the state it was given: a denied request consumes nothing. The caller has already
refused a cost above the limit's capacity (`never`), so every function may assume it fits.
The Lua scripts under `lua/` compute the same numbers on the Redis server.
"""

from __future__ import annotations

import itertools
from collections import deque

Verdict = tuple[bool, int, int, int, int, object]

# A sliding log: when each unit admitted in the last period leaves it, oldest first.
Log = deque[int]


def tat(
    state: int | None, now: int, cost: int, interval: int, capacity: int, shaping: bool
) -> tuple[bool, int, int, int, int, int | None]:
    """GCRA over a theoretical arrival time (token bucket and leaky bucket are the same sum).

    The key's TAT is when it would be back at rest; a request of `cost` moves it `cost`
    intervals later and is admitted while that stays within `capacity` intervals of now.
    With `shaping` (leaky bucket) an admitted request waits until its slot: the old TAT.
    """
    base = now if state is None or state < now else state
    window = capacity * interval
    new_tat = base + cost * interval
    if new_tat - now > window:
        # Admitted once the TAT has drained far enough for `cost` more intervals.
        remaining = (window - (base - now)) // interval
        return False, remaining, new_tat - window - now, base - now, 0, state
    remaining = (window - (new_tat - now)) // interval
    return True, remaining, 0, new_tat - now, (base - now) if shaping else 0, new_tat


def fixed_window(
    state: tuple[int, int] | None, now: int, cost: int, limit: int, period: int
) -> tuple[bool, int, int, int, int, tuple[int, int] | None]:
    """A counter per aligned window `[k*period, (k+1)*period)`."""
    start = now - now % period
    count = state[1] if state is not None and state[0] == start else 0
    end = start + period - now
    if count + cost > limit:
        return False, limit - count, end, end, 0, state
    count += cost
    return True, limit - count, 0, end, 0, (start, count)


def sliding_window(
    state: tuple[int, int, int] | None,
    now: int,
    cost: int,
    limit: int,
    period: int,
    grain: int = 1,
) -> tuple[bool, int, int, int, int, tuple[int, int, int] | None]:
    """The weighted two-window counter: previous * (unexpired share) + current <= limit.

    State is (window start, current count, previous count); all products stay integers by
    comparing everything multiplied by `period`. The wait is rounded up to a multiple of
    `grain` (see `sliding_retry`).
    """
    start = now - now % period
    current = previous = 0
    if state is not None:
        if state[0] == start:
            current, previous = state[1], state[2]
        elif state[0] == start - period:
            previous = state[1]
    elapsed = now - start
    weighted = previous * (period - elapsed) + current * period
    room = limit * period - weighted
    if cost * period > room:
        retry = sliding_retry(current, previous, elapsed, cost, limit, period, grain)
        return (
            False,
            max(0, room // period),
            retry,
            sliding_reset(current, previous, elapsed, period),
            0,
            state,
        )
    current += cost
    remaining = (room - cost * period) // period
    reset = sliding_reset(current, previous, elapsed, period)
    return True, remaining, 0, reset, 0, (start, current, previous)


def sliding_retry(
    current: int,
    previous: int,
    elapsed: int,
    cost: int,
    limit: int,
    period: int,
    grain: int = 1,
) -> int:
    """Time until `cost` fits, as the previous window's weight decays, rounded up to `grain`.

    The memory storage counts in nanoseconds and passes a grain of 1000, so its waits are the
    Redis storage's, which counts in microseconds: the two decide alike (`ceil(ns / 1000)` of
    the exact wait is the wait computed in microseconds), and a wait rounded up is still one
    after which the cost fits.
    """
    if current + cost <= limit:
        # Later in this window: previous * (period - e) <= (limit - current - cost) * period.
        needed = period - (limit - current - cost) * period // previous
        wait = needed - elapsed
    else:
        # In the next window, where this window's count is the previous one.
        needed = period - (limit - cost) * period // current
        wait = period - elapsed + needed
    return -(-wait // grain) * grain


def sliding_reset(current: int, previous: int, elapsed: int, period: int) -> int:
    """Time until both windows' counts stop weighing."""
    if current:
        return 2 * period - elapsed
    if previous:
        return period - elapsed
    return 0


def sliding_log(
    state: Log | None, now: int, cost: int, limit: int, period: int
) -> tuple[bool, int, int, int, int, Log | None]:
    """Every admission kept until `period` after it: at most `limit` in any such interval.

    The log holds, for every unit admitted, the time it leaves the window (its admission plus
    `period`), oldest first, and is trimmed in place (what left the window is gone for every
    later decision too). An admission does not append to it: the caller appends with
    `log_append` once every limit checked with it has admitted too.
    """
    if state is None:
        state = deque()
    else:
        while state and state[0] <= now:
            state.popleft()
    total = len(state)
    if total + cost > limit:
        # The oldest units leave first: the request fits once `excess` of them have left.
        excess = total + cost - limit
        return False, limit - total, state[excess - 1] - now, state[-1] - now, 0, state
    return True, limit - total - cost, 0, period, 0, state


def log_append(state: Log, leaves: int, cost: int) -> Log:
    """The admitted log `sliding_log` returned, with `cost` units leaving at `leaves`."""
    if cost == 1:
        state.append(leaves)
    else:
        state.extend(itertools.repeat(leaves, cost))
    return state
