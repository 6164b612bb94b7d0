"""Limiter state in this process's memory: plain dicts, no lock, no await, no sweeper thread.

A decision reads and writes its key's state with no `await` in between, so on one event loop
it is atomic without a lock (the sync face adds one lock per limiter for threads). States
expire lazily, table by table (`tables.py`). A limiter with one limit decides through a fused
closure (`fast.py`); several limits go through `Slot`s, which check every limit with the pure
`arithmetic` and write the new states only when all of them admit.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from agent.limits import arithmetic, fast
from agent.limits.counts import Counts
from agent.limits.decision import Decision, Outcome
from agent.limits.errors import LimitError
from agent.limits.policy import (
    NANOS,
    TAT_STRATEGIES,
    Cost,
    Limit,
    Strategy,
    costs,
    interval_ns,
    period_ns,
)
from agent.limits.tables import Generations, Windows

Verdict = tuple[bool, int, int, int, int, Any]
INFINITE = float("inf")
# Keys per table generation read for the utilization gauge at each collection.
SCAN_KEYS = 10_000


def horizon_ns(limit: Limit) -> int:
    """How long (ns) a state written now can still change a decision of `limit`."""
    if limit.strategy in TAT_STRATEGIES:
        return limit.capacity * interval_ns(limit) + 1
    return period_ns(limit) + 1


class Slot:
    """One limit of a multi-limit binding: its table, and check-then-commit on it."""

    def __init__(self, limit: Limit) -> None:
        self.table: Generations | Windows
        if limit.strategy in (Strategy.FIXED_WINDOW, Strategy.SLIDING_WINDOW):
            self.table = Windows(period_ns(limit))
        else:
            self.table = Generations(horizon_ns(limit))
        self.use(limit)

    def use(self, limit: Limit) -> None:
        """Decide by `limit` (rescaled) from now on."""
        self.limit = limit
        self.strategy = limit.strategy
        self.quota = limit.capacity if limit.strategy in TAT_STRATEGIES else limit.limit
        if isinstance(self.table, Generations):
            # A rescaled TAT limit may remember states for longer: never drop one early.
            self.table.horizon = max(self.table.horizon, horizon_ns(limit))

    def check(self, key: str, now: int, cost: int) -> Verdict:
        """The limit's verdict on `cost` for `key`, changing nothing that counts."""
        limit = self.limit
        table = self.table
        if isinstance(table, Windows):
            if now >= table.end:
                table.roll(now)
            current = table.current.get(key, 0)
            if self.strategy is Strategy.FIXED_WINDOW:
                return arithmetic.fixed_window(
                    (table.start, current) if current else None,
                    now,
                    cost,
                    limit.limit,
                    period_ns(limit),
                )
            return arithmetic.sliding_window(
                (table.start, current, table.previous.get(key, 0)),
                now,
                cost,
                limit.limit,
                period_ns(limit),
                fast.GRAIN,
            )
        state = table.get(key, now)
        if self.strategy is Strategy.SLIDING_LOG:
            return arithmetic.sliding_log(state, now, cost, limit.limit, period_ns(limit))
        return arithmetic.tat(
            state,
            now,
            cost,
            interval_ns(limit),
            limit.capacity,
            self.strategy is Strategy.LEAKY_BUCKET,
        )

    def commit(self, key: str, now: int, cost: int, verdict: Verdict) -> None:
        """Store the state an admitting `verdict` computed."""
        new = verdict[5]
        if isinstance(self.table, Windows):
            self.table.current[key] = new[1]
        elif self.strategy is Strategy.SLIDING_LOG:
            self.table.current[key] = arithmetic.log_append(new, now + period_ns(self.limit), cost)
        else:
            self.table.current[key] = new

    def decision(self, verdict: Verdict, outcome: Outcome | None = None) -> Decision:
        """`verdict` as this limit's `Decision`."""
        if outcome is None:
            outcome = Outcome.ALLOWED if verdict[0] else Outcome.DENIED
        return Decision(
            outcome,
            self.quota,
            verdict[1],
            INFINITE if outcome is Outcome.NEVER else verdict[2] / NANOS,
            verdict[3] / NANOS,
            verdict[4] / NANOS if outcome is Outcome.ALLOWED else 0.0,
            self.limit.name,
            self.limit.period_seconds,
        )

    def __len__(self) -> int:
        return len(self.table)


class MemoryBinding:
    """One limiter's limits and their states in a `MemoryStorage`, counted in `counts`.

    `decide(key, cost)` returns a `Decision`; `admit(key, cost)` only whether it was admitted,
    and `hit(key, cost=1)` is `admit` as a coroutine function (the asyncio face's `hit`).
    Both validate `cost` (a whole number >= 0; 0 reads without spending). With several limits
    `cost` may also map each limit's name to its own cost (1 request, 350 tokens).
    """

    decide: Callable[[str, Cost], Decision]
    admit: Callable[[str, Cost], bool]
    hit: Callable[..., Coroutine[Any, Any, bool]]

    def __init__(self, clock: Callable[[], int], limits: Sequence[Limit], counts: Counts) -> None:
        self._clock = clock
        self.counts = counts
        self._slots = [Slot(limit) for limit in limits]
        self._names = [limit.name for limit in limits]
        self.use(limits)

    def use(self, limits: Sequence[Limit]) -> None:
        """Decide by `limits` from now on (the same limits, rescaled), keeping every state."""
        if [limit.name for limit in limits] != self._names:
            raise LimitError("a binding keeps its limits; only their rates may change")
        for slot, limit in zip(self._slots, limits, strict=True):
            slot.use(limit)
        if len(limits) > 1:
            self.decide = self._decide_all
            self.admit = self._admit_all
            self.hit = self._hit_all
            return
        limit = limits[0]
        table = self._slots[0].table
        makers: dict[Strategy, Callable[..., fast.Deciders]] = {
            Strategy.FIXED_WINDOW: fast.fixed_deciders,
            Strategy.SLIDING_WINDOW: fast.sliding_deciders,
            Strategy.SLIDING_LOG: fast.log_deciders,
        }
        make = makers.get(limit.strategy, fast.tat_deciders)
        self.decide, self.admit, self.hit = make(
            limit,
            table,
            self._clock,
            self.counts,
            self._never,
        )

    def _never(self, key: str, cost: int, now: int) -> Decision:
        """The `never` decision for a cost above the single limit's capacity, counted."""
        slot = self._slots[0]
        return self.counts.note(slot.decision(slot.check(key, now, 0), Outcome.NEVER))

    def _decide_all(self, key: str, cost: Cost) -> Decision:
        spend = costs(cost, self._names)
        now = self._clock()
        parts = []
        verdicts = []
        for slot, each in zip(self._slots, spend, strict=True):
            if each > slot.quota:
                verdict = slot.check(key, now, 0)
                parts.append(slot.decision(verdict, Outcome.NEVER))
            else:
                verdict = slot.check(key, now, each)
                parts.append(slot.decision(verdict))
            verdicts.append(verdict)
        if all(part.outcome is Outcome.ALLOWED for part in parts):
            for slot, each, verdict in zip(self._slots, spend, verdicts, strict=True):
                slot.commit(key, now, each, verdict)
            return self.counts.note(combine(parts))
        # Nothing was consumed: the limits that would have admitted report what they hold now.
        for index, slot in enumerate(self._slots):
            if parts[index].outcome is Outcome.ALLOWED:
                parts[index] = slot.decision(slot.check(key, now, 0))
        return self.counts.note(combine(parts))

    def _admit_all(self, key: str, cost: Cost) -> bool:
        return self._decide_all(key, cost).allowed

    async def _hit_all(self, key: str, cost: Cost = 1) -> bool:
        return self._decide_all(key, cost).allowed

    def states(self) -> int:
        """How many keys hold state (both generations or windows, every limit)."""
        return sum(len(slot) for slot in self._slots)

    def utilization(self) -> float:
        """The highest share of its quota any key holds now, over every limit (0 to 1).

        Read when metrics are collected, so decisions pay nothing for it; only the most recently
        written `SCAN_KEYS` keys of each table are read, which bounds the cost of a collection.
        """
        now = self._clock()
        highest = 0.0
        for slot in self._slots:
            table = slot.table
            quota = slot.quota
            for generation in (table.current, table.previous):
                keys = list(itertools.islice(reversed(generation), SCAN_KEYS))
                for key in keys:
                    remaining = slot.check(key, now, 0)[1]
                    highest = max(highest, (quota - remaining) / quota)
        return min(1.0, highest)


def combine(parts: Sequence[Decision]) -> Decision:
    """One decision from each limit's own: all-or-nothing, naming the limit that binds.

    Denied if any limit denies (`never` if any can never admit the cost); the binding limit is
    then the one with the longest wait, else the one with the least left.
    """
    never = [part for part in parts if part.outcome is Outcome.NEVER]
    denied = [part for part in parts if part.outcome is Outcome.DENIED]
    if never:
        binding = never[0]
        outcome = Outcome.NEVER
    elif denied:
        binding = max(denied, key=lambda part: part.retry_after)
        outcome = Outcome.DENIED
    else:
        binding = min(parts, key=lambda part: part.remaining)
        outcome = Outcome.ALLOWED
    return Decision(
        outcome,
        binding.limit,
        binding.remaining,
        binding.retry_after,
        max(part.reset_after for part in parts),
        max(part.delay for part in parts) if outcome is Outcome.ALLOWED else 0.0,
        binding.policy,
        binding.period_seconds,
        tuple(parts),
    )


class MemoryStorage:
    """Limiter states in this process.

    `clock` returns whole nanoseconds and must never go back; the default is the monotonic
    clock (`time.monotonic_ns`, called directly: a wrapper would be one more Python call on
    every decision). A test passes a fake one to decide at chosen times.
    """

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        self.clock: Callable[[], int] = clock or time.monotonic_ns

    def bind(self, limits: Sequence[Limit], counts: Counts) -> MemoryBinding:
        """A new, empty set of states for one limiter's limits, counted in `counts`."""
        return MemoryBinding(self.clock, limits, counts)
