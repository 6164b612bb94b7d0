"""Limiters: named limits over a storage, with counts for metrics and a policy for storage failures.

`Limiter` is the asyncio face (any storage); `SyncLimiter` the thread-safe one for code that is
not asyncio. Over the memory storage both run the same arithmetic on the same states, so the
same sequence of calls at the same times gets the same decisions from either.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from agent.limits.counts import Counts
from agent.limits.decision import Decision, Outcome
from agent.limits.errors import LimitError, StorageError
from agent.limits.memory import MemoryBinding, MemoryStorage
from agent.limits.policy import Cost, Limit, costs


class FailurePolicy(enum.StrEnum):
    """What a limiter answers when its storage cannot decide."""

    # Admit (Envoy, Stripe and Upstash default to this: a limiter outage must not be an outage).
    OPEN = "open"
    # Deny, for limits that protect something that must never be overrun.
    CLOSED = "closed"


class AsyncBinding(Protocol):
    """One limiter's limits in a storage decided with I/O (Redis)."""

    async def decide(self, key: str, cost: Cost) -> Decision:
        """Admit `cost` for `key` under every limit or none; raises `StorageError`."""
        ...

    def use(self, limits: Sequence[Limit]) -> None:
        """Decide by these (rescaled) limits from now on."""
        ...


class AsyncStorage(Protocol):
    """A storage whose decisions need I/O."""

    def bind(self, limits: Sequence[Limit], namespace: str) -> AsyncBinding:
        """The limits of the limiter named `namespace`."""
        ...


class SyncBinding(Protocol):
    """One limiter's limits in a thread-safe storage decided with blocking I/O."""

    def decide(self, key: str, cost: Cost) -> Decision:
        """Admit `cost` for `key` under every limit or none; raises `StorageError`."""
        ...

    def use(self, limits: Sequence[Limit]) -> None:
        """Decide by these (rescaled) limits from now on."""
        ...


class SyncStorage(Protocol):
    """A thread-safe storage whose decisions block on I/O."""

    def bind(self, limits: Sequence[Limit], namespace: str) -> SyncBinding:
        """The limits of the limiter named `namespace`."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class LimiterStats:
    """What a limiter has decided since it was made: what its metrics publish."""

    decisions: Mapping[Outcome, int]
    storage_errors: int
    utilization: float  # the peak used share of any key's quota, this period and the last
    factor: float  # the current throttling factor (1.0: the configured rates)


def _limits(limits: Limit | Sequence[Limit]) -> tuple[Limit, ...]:
    found = (limits,) if isinstance(limits, Limit) else tuple(limits)
    if not found or not all(isinstance(limit, Limit) for limit in found):
        raise LimitError("a limiter needs one or more Limit objects")
    names = [limit.name for limit in found]
    if len(set(names)) != len(names):
        raise LimitError(f"the limits of one limiter need distinct names, not {names}")
    return found


class _Face:
    """What both faces share: name, limits, counts, failure policy, scaling."""

    _binding: Any

    def __init__(self, name: str, limits: Limit | Sequence[Limit], on_error: FailurePolicy) -> None:
        self.name = name
        self.on_error = FailurePolicy(on_error)
        self._base = _limits(limits)
        self._names = [limit.name for limit in self._base]
        self._limits = self._base
        self._factor = 1.0
        self._counts = Counts()
        self._previous_peak = 0.0
        self._refused = 0

    @property
    def limits(self) -> tuple[Limit, ...]:
        """The limits decisions use now (the configured ones times the throttling factor)."""
        return self._limits

    @property
    def factor(self) -> float:
        """The throttling factor last set with `scale` (1.0 at first)."""
        return self._factor

    def scale(self, factor: float) -> None:
        """Multiply every limit's rate by `factor` in (0, 1] from now on (throttling).

        States are kept: a key that spent its quota at the full rate waits at the new one.
        """
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor <= 1:
            raise LimitError(f"a scale factor is in (0, 1], not {factor!r}")
        limits = tuple(limit.scaled(factor) for limit in self._base)
        self._binding.use(limits)
        self._limits = limits
        self._factor = float(factor)

    def stats(self) -> LimiterStats:
        """Counts since start, and utilization as `utilization` reads it (without a new period)."""
        _, peak = self._peak()
        counts = self._counts
        return LimiterStats(counts.by_outcome(), counts.errors, peak, self._factor)

    def utilization(self) -> float:
        """The share of its quota the busiest key uses (0 to 1); each read starts a period.

        1 when any request was refused in this period or the last; otherwise the highest share
        any key holds now (memory storage) or held after a decision (other storages) in them.
        Reporting the period before too means a refusal is seen even by the second of two
        readers that collect in turn.
        """
        current, peak = self._peak()
        counts = self._counts
        self._refused = counts.denied + counts.never + counts.fail_closed
        self._previous_peak, counts.peak = current, 0.0
        return peak

    def held(self) -> float | None:
        """The highest share of its quota any key holds now (0 to 1), starting no period.

        Over the memory storage only (None over another): what `utilization` reads of the keys,
        without the refusals and peaks of its periods, so reading it changes no gauge.
        """
        return None if self._memory is None else self._memory.utilization()

    def states(self) -> int | None:
        """How many key states the memory storage holds (None over another storage).

        A key counts once per limit and per table generation it has a state in, so this is the
        memory held rather than distinct clients.
        """
        return None if self._memory is None else self._memory.states()

    def _peak(self) -> tuple[float, float]:
        """This period's peak, and the one reported: with the last period's and what is held."""
        counts = self._counts
        refused = counts.denied + counts.never + counts.fail_closed
        current = 1.0 if refused != self._refused else min(1.0, counts.peak)
        held = 0.0 if self._memory is None else self._memory.utilization()
        return current, max(current, self._previous_peak, held)

    def _bind(self, storage: MemoryStorage | AsyncStorage | SyncStorage | None) -> None:
        """Bind the limits to `storage` (this process's memory when None)."""
        storage = MemoryStorage() if storage is None else storage
        self._memory: MemoryBinding | None
        if isinstance(storage, MemoryStorage):
            self._memory = storage.bind(self._limits, self._counts)
            self._binding = self._memory
        else:
            self._memory = None
            self._binding = storage.bind(self._limits, self.name)

    def _failed(self) -> Decision:
        """The failure policy's decision for a storage error, counted."""
        self._counts.errors += 1
        first = self._limits[0]
        if self.on_error is FailurePolicy.OPEN:
            decision = Decision(
                Outcome.FAIL_OPEN,
                first.limit,
                first.limit,
                0.0,
                0.0,
                0.0,
                first.name,
                first.period_seconds,
            )
        else:
            # Retry after a period: sooner, the storage is unlikely to be back.
            decision = Decision(
                Outcome.FAIL_CLOSED,
                first.limit,
                0,
                first.period_seconds,
                first.period_seconds,
                0.0,
                first.name,
                first.period_seconds,
            )
        return self._counts.note(decision)


class Limiter(_Face):
    """An asyncio rate limiter: `await limiter.decide(key, cost)`.

    Over the memory storage (the default) a decision has no `await` and no lock inside; over an
    `AsyncStorage` (Redis) a storage failure is answered by `on_error` and counted.
    """

    def __init__(
        self,
        name: str,
        limits: Limit | Sequence[Limit],
        storage: MemoryStorage | AsyncStorage | None = None,
        *,
        on_error: FailurePolicy = FailurePolicy.OPEN,
    ) -> None:
        super().__init__(name, limits, on_error)
        self._bind(storage)
        self._fuse()

    def _fuse(self) -> None:
        # Over memory, `hit` is the storage's fused coroutine function itself (an instance
        # attribute shadows the method): one Python call per decision instead of two.
        if self._memory is not None:
            setattr(self, "hit", self._memory.hit)  # noqa: B010 (mypy refuses assigning a method)

    def scale(self, factor: float) -> None:
        """Multiply every limit's rate by `factor` in (0, 1] from now on (throttling).

        States are kept: a key that spent its quota at the full rate waits at the new one.
        """
        super().scale(factor)
        self._fuse()

    async def decide(self, key: str, cost: Cost = 1) -> Decision:
        """Admit `cost` for `key` under every limit, or under none of them."""
        if self._memory is not None:
            return self._memory.decide(key, cost)
        costs(cost, self._names)
        try:
            decision = await self._binding.decide(key, cost)
        except StorageError:
            return self._failed()
        return self._counts.note(decision)

    async def hit(self, key: str, cost: Cost = 1) -> bool:
        """Whether `cost` for `key` is admitted (and spent)."""
        return (await self.decide(key, cost)).allowed


class SyncLimiter(_Face):
    """A thread-safe rate limiter for code that is not asyncio: `limiter.decide(key, cost)`.

    Over the memory storage one lock per limiter guards the states; a thread that finds it held
    waits for it (a few microseconds) rather than being denied.
    """

    def __init__(
        self,
        name: str,
        limits: Limit | Sequence[Limit],
        storage: MemoryStorage | SyncStorage | None = None,
        *,
        on_error: FailurePolicy = FailurePolicy.OPEN,
    ) -> None:
        super().__init__(name, limits, on_error)
        # One lock guards the memory states, and the counts over any storage.
        self._lock = threading.Lock()
        self._bind(storage)

    def decide(self, key: str, cost: Cost = 1) -> Decision:
        """Admit `cost` for `key` under every limit, or under none of them."""
        if self._memory is not None:
            with self._lock:
                return self._memory.decide(key, cost)
        costs(cost, self._names)
        try:
            decision = self._binding.decide(key, cost)
        except StorageError:
            with self._lock:
                return self._failed()
        with self._lock:
            return self._counts.note(decision)

    def hit(self, key: str, cost: Cost = 1) -> bool:
        """Whether `cost` for `key` is admitted (and spent)."""
        if self._memory is not None:
            with self._lock:
                return self._memory.admit(key, cost)
        return self.decide(key, cost).allowed

    def scale(self, factor: float) -> None:
        """Multiply every limit's rate by `factor` in (0, 1] from now on (throttling)."""
        with self._lock:
            super().scale(factor)

    def utilization(self) -> float:
        """As `Limiter.utilization`, read under the limiter's lock."""
        with self._lock:
            return super().utilization()

    def held(self) -> float | None:
        """As `Limiter.held`, read under the limiter's lock."""
        with self._lock:
            return super().held()

    def states(self) -> int | None:
        """As `Limiter.states`, read under the limiter's lock."""
        with self._lock:
            return super().states()
