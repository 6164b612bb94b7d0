"""Fallbacks and partial failure: when a call fails, answer with something useful and say what.

`Fallback` tries its primary first, then each strategy of its chain in order (Hystrix taxonomy:
cached, static, alternative service), and returns a `FallbackResult` naming the source that served
and every error met on the way. `PartialFailureHandler` fans a request out to components
concurrently and returns what the healthy ones produced with a status per component, instead of
failing whole.

Both keep plain integer counters (`stats()`) for the agent to publish; neither touches telemetry.
Neither ever swallows `asyncio.CancelledError`: only `Exception` subclasses are treated as failures.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from agent.degradation.breaker import CircuitBreaker

P = ParamSpec("P")
T = TypeVar("T")

Clock = Callable[[], float]


class FallbackSource(enum.StrEnum):
    """Who produced a fallback result; the values become the `strategy` label."""

    PRIMARY = "primary"
    CACHED = "cached"
    STATIC = "static"
    ALTERNATIVE = "alternative"


class CacheMissError(Exception):
    """A cached fallback had no value for the call young enough to serve."""


@dataclasses.dataclass(frozen=True, slots=True)
class FallbackResult(Generic[T]):
    """What a fallback call produced, where it came from, and what failed before it.

    `stale` is true only for a cached value older than the cache's `ttl_seconds`. `errors` holds
    `(source, exception type name)` for each strategy that failed, in the order they were tried.
    """

    value: T
    source: FallbackSource
    stale: bool = False
    errors: tuple[tuple[FallbackSource, str], ...] = ()


class FallbackExhaustedError(Exception):
    """The primary and every strategy of the chain failed; raised by `Fallback.value()`.

    `errors` are `(source, exception type name)` pairs in the order tried and `exceptions` the
    exceptions themselves; the last one is also the `__cause__`.
    """

    def __init__(
        self,
        name: str,
        errors: tuple[tuple[FallbackSource, str], ...],
        exceptions: tuple[Exception, ...],
    ) -> None:
        """Carry the fallback's name and every error met."""
        self.name = name
        self.errors = errors
        self.exceptions = exceptions
        tried = ", ".join(f"{source}: {error}" for source, error in errors)
        super().__init__(f"fallback {name!r} exhausted ({tried})")


class FallbackStrategy(Protocol[T]):
    """One step of a fallback chain. `serve` returns `(value, stale)` or raises to pass on."""

    @property
    def source(self) -> FallbackSource:
        """The source label this strategy serves under."""
        ...

    def remember(
        self, value: T, args: tuple[Any, ...], kwargs: Mapping[str, Any], now: float
    ) -> None:
        """Observe a successful primary result (a cache keeps it; others ignore it)."""
        ...

    async def serve(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], now: float
    ) -> tuple[T, bool]:
        """Produce a value for the call's arguments, and whether it is stale."""
        ...


def _default_key(*args: Any, **kwargs: Any) -> Hashable:
    """The call's arguments as a cache key; they must be hashable (else pass `key=`)."""
    return (args, tuple(sorted(kwargs.items())))


class CachedFallback(Generic[T]):
    """Serves the last good primary value for the same arguments when the primary fails.

    The primary is always tried first: the cache is a fallback, not a read-through cache. A value
    up to `max_staleness_seconds` old is served; one older than `ttl_seconds` is served marked
    stale; one older than `max_staleness_seconds` is never served. Values are keyed by the call's
    arguments (`key(*args, **kwargs)`, default: the arguments themselves, which must then be
    hashable: an unhashable argument raises `TypeError` from the first successful call), and at
    most `max_entries` keys are kept, least recently stored evicted first.
    """

    source = FallbackSource.CACHED

    def __init__(
        self,
        ttl_seconds: float,
        max_staleness_seconds: float,
        *,
        key: Callable[..., Hashable] = _default_key,
        max_entries: int = 1024,
    ) -> None:
        """A cache; `ValueError` unless 0 <= ttl <= max_staleness and max_entries >= 1."""
        if not 0 <= ttl_seconds <= max_staleness_seconds:
            raise ValueError("CachedFallback: need 0 <= ttl_seconds <= max_staleness_seconds")
        if max_entries < 1:
            raise ValueError("CachedFallback.max_entries: must be at least 1")
        self.ttl_seconds = ttl_seconds
        self.max_staleness_seconds = max_staleness_seconds
        self._key = key
        self._max_entries = max_entries
        self._entries: collections.OrderedDict[Hashable, tuple[float, T]] = (
            collections.OrderedDict()
        )

    def remember(
        self, value: T, args: tuple[Any, ...], kwargs: Mapping[str, Any], now: float
    ) -> None:
        """Keep `value` as the last good answer for these arguments."""
        key = self._key(*args, **kwargs)
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def serve(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], now: float
    ) -> tuple[T, bool]:
        """The remembered value and whether it is past the ttl; `CacheMissError` if none fits."""
        key = self._key(*args, **kwargs)
        entry = self._entries.get(key)
        if entry is None:
            raise CacheMissError("no cached value")
        stored_at, value = entry
        age = now - stored_at
        if age > self.max_staleness_seconds:
            del self._entries[key]
            raise CacheMissError(f"cached value is {age:.3f}s old, past max_staleness_seconds")
        return value, age > self.ttl_seconds


class StaticFallback(Generic[T]):
    """Serves a fixed value (fail silent / embedded default), or one stubbed from the arguments."""

    source = FallbackSource.STATIC

    def __init__(self, value: T) -> None:
        """Always serve `value`."""
        self._factory: Callable[..., T] = lambda *args, **kwargs: value

    @classmethod
    def from_factory(cls, factory: Callable[..., T]) -> StaticFallback[T]:
        """Serve `factory(*args, **kwargs)` (sync), built from the call's arguments each time."""
        static: StaticFallback[T] = cls.__new__(cls)
        static._factory = factory
        return static

    def remember(
        self, value: T, args: tuple[Any, ...], kwargs: Mapping[str, Any], now: float
    ) -> None:
        """Static values do not learn from the primary."""

    async def serve(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], now: float
    ) -> tuple[T, bool]:
        """The static value, never stale."""
        return self._factory(*args, **kwargs), False


class AlternativeFallback(Generic[T]):
    """Serves from a secondary service: `fn(*args, **kwargs)`, optionally behind its own breaker."""

    source = FallbackSource.ALTERNATIVE

    def __init__(
        self, fn: Callable[..., Awaitable[T]], *, breaker: CircuitBreaker | None = None
    ) -> None:
        """Call `fn` with the primary's arguments; through `breaker` when given."""
        self._fn = fn
        self._breaker = breaker

    def remember(
        self, value: T, args: tuple[Any, ...], kwargs: Mapping[str, Any], now: float
    ) -> None:
        """The secondary service does not learn from the primary."""

    async def serve(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], now: float
    ) -> tuple[T, bool]:
        """The secondary's answer, never stale."""
        if self._breaker is None:
            return await self._fn(*args, **kwargs), False
        return await self._breaker.call(self._fn, *args, **kwargs), False


@dataclasses.dataclass(frozen=True, slots=True)
class FallbackStats:
    """Lifetime counters of one fallback: results served and failures, by source.

    `exhausted` counts calls where every source failed; `stale` counts stale cached results served.
    """

    name: str
    calls: int
    served: dict[FallbackSource, int]
    failures: dict[FallbackSource, int]
    stale: int
    exhausted: int


class Fallback(Generic[P, T]):
    """A primary coroutine function with an ordered chain of fallback strategies.

    Only exceptions that are instances of `fallback_on` make the primary fall back; any other
    propagates at once (a bad request should not be masked by a cached answer). A strategy that
    raises any `Exception` passes to the next. With `breaker=`, the primary runs through it, so an
    open circuit skips the primary without calling it (recorded as `CircuitOpenError`). Only
    primary successes are remembered by the chain (an alternative's answer is not cached).
    """

    def __init__(
        self,
        name: str,
        primary: Callable[P, Awaitable[T]],
        chain: Sequence[FallbackStrategy[T]] = (),
        *,
        breaker: CircuitBreaker | None = None,
        fallback_on: tuple[type[Exception], ...] = (Exception,),
        clock: Clock = time.monotonic,
    ) -> None:
        """A fallback named `name` (the metric label)."""
        self.name = name
        self._primary = primary
        self._chain = tuple(chain)
        self._breaker = breaker
        self._fallback_on = fallback_on
        self._clock = clock
        self._calls = 0
        self._served = dict.fromkeys(FallbackSource, 0)
        self._failures = dict.fromkeys(FallbackSource, 0)
        self._stale = 0
        self._exhausted = 0

    async def call(self, *args: P.args, **kwargs: P.kwargs) -> FallbackResult[T]:
        """Try the primary, then the chain; a result, or `FallbackExhaustedError` if all failed."""
        self._calls += 1
        errors: list[tuple[FallbackSource, str]] = []
        exceptions: list[Exception] = []
        try:
            if self._breaker is None:
                value = await self._primary(*args, **kwargs)
            else:
                value = await self._breaker.call(self._primary, *args, **kwargs)
        except Exception as exc:
            self._failures[FallbackSource.PRIMARY] += 1
            if not isinstance(exc, self._fallback_on):
                raise
            errors.append((FallbackSource.PRIMARY, type(exc).__name__))
            exceptions.append(exc)
        else:
            now = self._clock()
            for strategy in self._chain:
                strategy.remember(value, args, kwargs, now)
            self._served[FallbackSource.PRIMARY] += 1
            return FallbackResult(value, FallbackSource.PRIMARY)

        for strategy in self._chain:
            try:
                value, stale = await strategy.serve(args, kwargs, self._clock())
            except Exception as exc:
                self._failures[strategy.source] += 1
                errors.append((strategy.source, type(exc).__name__))
                exceptions.append(exc)
                continue
            self._served[strategy.source] += 1
            self._stale += stale
            return FallbackResult(value, strategy.source, stale, tuple(errors))

        self._exhausted += 1
        raise FallbackExhaustedError(self.name, tuple(errors), tuple(exceptions)) from exceptions[
            -1
        ]

    async def value(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Just the value of `call()`; raises `FallbackExhaustedError` when every source failed."""
        return (await self.call(*args, **kwargs)).value

    def stats(self) -> FallbackStats:
        """A snapshot of the lifetime counters."""
        return FallbackStats(
            name=self.name,
            calls=self._calls,
            served=dict(self._served),
            failures=dict(self._failures),
            stale=self._stale,
            exhausted=self._exhausted,
        )


class ComponentState(enum.StrEnum):
    """How one component of a fan-out ended; the values become a label."""

    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


class PartialStatus(enum.StrEnum):
    """A fan-out's overall status: all ok, enough ok, or not enough ok."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentResult:
    """One component's ending: its state, the exception type name if any, and how long it took."""

    state: ComponentState
    error: str | None = None
    duration_seconds: float = 0.0
    exception: BaseException | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class PartialResult(Generic[T]):
    """A fan-out's outcome: per-component results, the values of the ok ones, and the verdict.

    `ok` is `success_rate >= min_success_rate`; `status` is healthy when every component is ok,
    degraded when the rate is met but some failed, failed when the rate is not met.
    """

    status: PartialStatus
    ok: bool
    success_rate: float
    components: dict[str, ComponentResult]
    values: dict[str, T]


@dataclasses.dataclass(frozen=True, slots=True)
class PartialStats:
    """Lifetime counters of one handler: runs by status and component endings by state."""

    name: str
    runs: dict[PartialStatus, int]
    components: dict[str, dict[ComponentState, int]]


class PartialFailureHandler:
    """Runs independent components concurrently and judges the whole by its success rate.

    A component that raises or overruns its timeout fails alone; the others keep running. If
    `run()` itself is cancelled, every component is cancelled and the cancellation propagates. A
    component that ends cancelled on its own (without `run()` being cancelled) is reported failed
    with error `CancelledError`. Timeouts use the event loop's clock; `clock` only measures
    durations.
    """

    def __init__(self, name: str, min_success_rate: float, clock: Clock = time.monotonic) -> None:
        """A handler named `name`; `min_success_rate` is a fraction in (0, 1], not a percentage."""
        if not 0 < min_success_rate <= 1:
            raise ValueError("PartialFailureHandler.min_success_rate: must be a fraction in (0, 1]")
        self.name = name
        self.min_success_rate = min_success_rate
        self._clock = clock
        self._runs = dict.fromkeys(PartialStatus, 0)
        self._components: dict[str, dict[ComponentState, int]] = {}

    async def run(
        self,
        components: Mapping[str, Callable[[], Awaitable[T]]],
        timeout_seconds: float | Mapping[str, float] | None = None,
    ) -> PartialResult[T]:
        """Run every component at once; `timeout_seconds` is one limit for each, or one per name.

        Components missing from a timeout mapping run without a limit. `ValueError` when
        `components` is empty (there is nothing to judge).
        """
        if not components:
            raise ValueError(f"partial failure handler {self.name!r}: no components to run")
        values: dict[str, T] = {}
        tasks: dict[str, asyncio.Task[ComponentResult]] = {}
        async with asyncio.TaskGroup() as group:
            for name, fn in components.items():
                limit = (
                    timeout_seconds.get(name)
                    if isinstance(timeout_seconds, Mapping)
                    else timeout_seconds
                )
                tasks[name] = group.create_task(self._run_one(name, fn, limit, values))
        results = {
            # A task that ended cancelled although run() was not: the component cancelled itself.
            name: ComponentResult(ComponentState.FAILED, "CancelledError")
            if task.cancelled()
            else task.result()
            for name, task in tasks.items()
        }
        return self._judge(results, values)

    async def _run_one(
        self,
        name: str,
        fn: Callable[[], Awaitable[T]],
        limit: float | None,
        values: dict[str, T],
    ) -> ComponentResult:
        """Run one component, storing its value in `values`; failures come back as data."""
        started = self._clock()
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                values[name] = await fn()
        except Exception as exc:
            # A TimeoutError raised by the component itself is a failure, not our timeout.
            timed_out = isinstance(exc, TimeoutError) and deadline.expired()
            state = ComponentState.TIMED_OUT if timed_out else ComponentState.FAILED
            return ComponentResult(state, type(exc).__name__, self._clock() - started, exc)
        return ComponentResult(ComponentState.OK, None, self._clock() - started)

    def _judge(self, results: dict[str, ComponentResult], values: dict[str, T]) -> PartialResult[T]:
        """Count, rate and classify one run."""
        for name, result in results.items():
            counts = self._components.setdefault(name, dict.fromkeys(ComponentState, 0))
            counts[result.state] += 1
        rate = len(values) / len(results)
        ok = rate >= self.min_success_rate
        if len(values) == len(results):
            status = PartialStatus.HEALTHY
        elif ok:
            status = PartialStatus.DEGRADED
        else:
            status = PartialStatus.FAILED
        self._runs[status] += 1
        return PartialResult(status, ok, rate, results, values)

    def stats(self) -> PartialStats:
        """A snapshot of the lifetime counters."""
        return PartialStats(
            name=self.name,
            runs=dict(self._runs),
            components={name: dict(counts) for name, counts in self._components.items()},
        )
