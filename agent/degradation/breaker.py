"""An asyncio circuit breaker on the resilience4j model: sliding window, rates, probe permits.

States: `closed` lets calls through and records their outcomes in a sliding window (a ring buffer of
the last N calls, or N one-second buckets); once `minimum_calls` are in the window and the failure
rate or the slow-call rate reaches its threshold the breaker opens. `open` rejects every call with
`CircuitOpenError` until `wait_in_open_seconds` have passed; the next call after that moves it to
`half_open` (lazily: nothing runs in the background, so `state` reads `open` until someone calls).
`half_open` lets at most `permitted_calls_in_half_open` probes run at once; `success_threshold`
consecutive good probes close it, a failed or slow probe reopens it. `forced_open` and `disabled`
are manual states that only `reset()` (or another manual call) leaves.

Every transition bumps a generation number. A call remembers the generation it started in, and its
outcome is dropped from the window if the breaker has moved on since: a slow call started while
closed must not reopen or close the breaker when it finally ends under a later state.

The breaker keeps plain integer counters (`stats()`) and calls listeners on each transition, so the
agent can publish state and call counts through observable instruments without paying an SDK
measurement per call. It is meant for one event loop: state changes happen between awaits, so it
needs no lock, and it is not thread-safe.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

import structlog

log = structlog.get_logger("vigil.breaker")

P = ParamSpec("P")
T = TypeVar("T")

Clock = Callable[[], float]
Listener = Callable[[str, "BreakerState", "BreakerState"], None]

_FAILED = 1
_SLOW = 2


class WindowType(enum.StrEnum):
    """How the sliding window is measured: the last N calls, or the calls of the last N seconds."""

    COUNT = "count"
    TIME = "time"


class BreakerState(enum.StrEnum):
    """A breaker's state; the values become the `state` label."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


class CallOutcome(enum.StrEnum):
    """What became of one call; the values become the `kind` label of the calls counter."""

    SUCCESSFUL = "successful"
    FAILED = "failed"
    IGNORED = "ignored"
    NOT_PERMITTED = "not_permitted"
    CANCELLED = "cancelled"


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How one breaker judges its dependency; invalid values raise `ValueError` naming the field.

    `window_size` counts calls for a COUNT window and seconds for a TIME window. Thresholds are
    percentages in (0, 100] and trip when the rate is greater than or equal to them. A call is slow
    when it takes at least `slow_call_duration_seconds`. An exception that is an instance of
    `ignore_exceptions` is neither a success nor a failure; otherwise one that is an instance of
    `record_exceptions` is a failure, and any other exception counts as a success (the dependency
    answered; the caller's request was wrong), as in resilience4j.
    """

    window_type: WindowType = WindowType.COUNT
    window_size: int = 100
    minimum_calls: int = 100
    failure_rate_threshold: float = 50.0
    slow_call_duration_seconds: float = 60.0
    slow_call_rate_threshold: float = 100.0
    wait_in_open_seconds: float = 60.0
    permitted_calls_in_half_open: int = 1
    success_threshold: int = 1
    record_exceptions: tuple[type[Exception], ...] = (Exception,)
    ignore_exceptions: tuple[type[Exception], ...] = ()

    def __post_init__(self) -> None:
        """Reject values that would make the breaker never or always trip."""
        _require(self.window_size >= 1, "window_size", "must be at least 1")
        _require(self.minimum_calls >= 1, "minimum_calls", "must be at least 1")
        _require(
            self.window_type is not WindowType.COUNT or self.minimum_calls <= self.window_size,
            "minimum_calls",
            "must not exceed window_size for a count window (the breaker could never open)",
        )
        for field in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, field)
            _require(0 < value <= 100, field, "must be a percentage in (0, 100]")
        _require(self.slow_call_duration_seconds > 0, "slow_call_duration_seconds", "must be > 0")
        _require(
            math.isfinite(self.wait_in_open_seconds) and self.wait_in_open_seconds >= 0,
            "wait_in_open_seconds",
            "must be a finite number >= 0",
        )
        _require(self.permitted_calls_in_half_open >= 1, "permitted_calls_in_half_open", ">= 1")
        _require(self.success_threshold >= 1, "success_threshold", "must be at least 1")
        for field in ("record_exceptions", "ignore_exceptions"):
            types = getattr(self, field)
            _require(
                isinstance(types, tuple)
                and all(isinstance(t, type) and issubclass(t, Exception) for t in types),
                field,
                # CancelledError and friends are BaseExceptions: cancellation is never judged.
                "must be a tuple of Exception subclasses",
            )


def _require(ok: bool, field: str, reason: str) -> None:
    """Raise `ValueError` for `field` unless `ok`."""
    if not ok:
        raise ValueError(f"BreakerConfig.{field}: {reason}")


class CircuitOpenError(Exception):
    """A call was not permitted: the breaker is open, forced open, or its probe permits are taken.

    `remaining_seconds` is how long until the breaker will let a probe through: the rest of the
    open wait, 0.0 when half-open permits are all in use, and None when forced open (until reset).
    """

    def __init__(self, name: str, state: BreakerState, remaining_seconds: float | None) -> None:
        """Carry the breaker's name, its state and the remaining open time."""
        self.name = name
        self.state = state
        self.remaining_seconds = remaining_seconds
        if remaining_seconds is None:
            detail = "until reset"
        else:
            detail = f"retry in {remaining_seconds:.3f}s"
        super().__init__(f"circuit {name!r} is {state}: call not permitted, {detail}")


@dataclasses.dataclass(frozen=True, slots=True)
class WindowSnapshot:
    """The calls currently in a sliding window."""

    calls: int
    failed: int
    slow: int


class _CountWindow:
    """The outcomes of the last `size` calls in a ring buffer, with running totals (O(1))."""

    def __init__(self, size: int) -> None:
        """An empty ring of `size` slots."""
        self._ring = [0] * size
        self._next = 0
        self._filled = 0
        self._failed = 0
        self._slow = 0

    def record(self, flags: int, now: float) -> WindowSnapshot:
        """Add one outcome (bit flags), evicting the oldest when the ring is full."""
        del now
        if self._filled == len(self._ring):
            self._subtract(self._ring[self._next])
        else:
            self._filled += 1
        self._ring[self._next] = flags
        self._failed += bool(flags & _FAILED)
        self._slow += bool(flags & _SLOW)
        self._next = (self._next + 1) % len(self._ring)
        return self.snapshot(0.0)

    def _subtract(self, flags: int) -> None:
        """Remove an evicted outcome from the totals."""
        self._failed -= bool(flags & _FAILED)
        self._slow -= bool(flags & _SLOW)

    def snapshot(self, now: float) -> WindowSnapshot:
        """The totals over the ring."""
        del now
        return WindowSnapshot(self._filled, self._failed, self._slow)


class _TimeWindow:
    """The outcomes of the last `size` seconds in one bucket per second (resilience4j style).

    Buckets are indexed by whole monotonic second modulo `size`; moving the clock forward clears
    the buckets of the seconds skipped over, so old calls are forgotten without a background task.
    """

    def __init__(self, size: int) -> None:
        """`size` empty one-second buckets."""
        self._calls = [0] * size
        self._failed = [0] * size
        self._slow = [0] * size
        self._head: int | None = None
        self._totals = [0, 0, 0]

    def _advance(self, now: float) -> int:
        """Clear buckets older than the window as of `now`; return the index of now's bucket."""
        second = math.floor(now)
        size = len(self._calls)
        if self._head is None:
            self._head = second
        # A clock that steps backwards keeps writing into the newest bucket.
        steps = min(max(second - self._head, 0), size)
        for i in range(1, steps + 1):
            index = (self._head + i) % size
            self._totals[0] -= self._calls[index]
            self._totals[1] -= self._failed[index]
            self._totals[2] -= self._slow[index]
            self._calls[index] = self._failed[index] = self._slow[index] = 0
        self._head = max(self._head, second)
        return self._head % size

    def record(self, flags: int, now: float) -> WindowSnapshot:
        """Add one outcome to the bucket of the current second."""
        index = self._advance(now)
        failed, slow = int(bool(flags & _FAILED)), int(bool(flags & _SLOW))
        self._calls[index] += 1
        self._failed[index] += failed
        self._slow[index] += slow
        self._totals[0] += 1
        self._totals[1] += failed
        self._totals[2] += slow
        return self.snapshot(now)

    def snapshot(self, now: float) -> WindowSnapshot:
        """The totals over the buckets still inside the window at `now`."""
        if self._head is not None:
            self._advance(now)
        return WindowSnapshot(*self._totals)


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerStats:
    """A snapshot of one breaker for publishing through observable instruments.

    `calls` are lifetime counters by outcome (never reset, so they can back monotonic counters);
    `slow_calls` counts successful or failed calls that were also slow. The window figures describe
    the current generation only; the rates are None until `minimum_calls` are in the window.
    """

    name: str
    state: BreakerState
    calls: dict[CallOutcome, int]
    slow_calls: int
    buffered_calls: int
    failure_rate: float | None
    slow_call_rate: float | None
    transitions: int


@dataclasses.dataclass(slots=True)
class _Permit:
    """What a call needs to report its outcome: when it started and in which generation."""

    generation: int
    state: BreakerState
    started: float


class CircuitBreaker:
    """A named circuit breaker; wrap calls with `call(fn, ...)` or `async with breaker.guard():`."""

    def __init__(self, name: str, config: BreakerConfig, clock: Clock = time.monotonic) -> None:
        """A closed breaker named `name` (the metric label) judging calls by `config`."""
        self.name = name
        self.config = config
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._transitions = 0
        self._window = self._new_window()
        self._opened_at = 0.0
        self._half_open_in_flight = 0
        self._half_open_successes = 0
        self._listeners: list[Listener] = []
        self._calls = dict.fromkeys(CallOutcome, 0)
        self._slow_calls = 0

    def _new_window(self) -> _CountWindow | _TimeWindow:
        """An empty window of the configured type."""
        if self.config.window_type is WindowType.COUNT:
            return _CountWindow(self.config.window_size)
        return _TimeWindow(self.config.window_size)

    @property
    def state(self) -> BreakerState:
        """The current state; reads `open` until a call after the wait moves it to `half_open`."""
        return self._state

    @property
    def generation(self) -> int:
        """Bumped by every transition and reset; outcomes count only within their generation."""
        return self._generation

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(name, from_state, to_state)` on each transition; its errors are logged."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling `listener`; a listener never added is ignored."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await `fn(*args, **kwargs)` under the breaker; `CircuitOpenError` if not permitted."""
        async with self.guard():
            return await fn(*args, **kwargs)

    def guard(self) -> BreakerGuard:
        """An async context manager guarding one call: `async with breaker.guard(): ...`.

        Each guard holds its own permit, so one breaker can guard many concurrent calls; the
        breaker itself is not a context manager for that reason.
        """
        return BreakerGuard(self)

    def force_open(self) -> None:
        """Reject every call until `reset()` or `disable()`."""
        self._transition(BreakerState.FORCED_OPEN)

    def disable(self) -> None:
        """Let every call through and never trip; outcomes still count in the lifetime counters."""
        self._transition(BreakerState.DISABLED)

    def reset(self) -> None:
        """Back to closed with an empty window; calls already running are of an older generation."""
        self._transition(BreakerState.CLOSED)

    def stats(self) -> BreakerStats:
        """A snapshot of state, lifetime call counters and the current window's rates."""
        snap = self._window.snapshot(self._clock())
        failure_rate = slow_rate = None
        if snap.calls >= self.config.minimum_calls:
            failure_rate = 100.0 * snap.failed / snap.calls
            slow_rate = 100.0 * snap.slow / snap.calls
        return BreakerStats(
            name=self.name,
            state=self._state,
            calls=dict(self._calls),
            slow_calls=self._slow_calls,
            buffered_calls=snap.calls,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
            transitions=self._transitions,
        )

    # -- the state machine -------------------------------------------------------------------

    def _acquire(self) -> _Permit:
        """Permit one call now or raise `CircuitOpenError` (counted as not permitted)."""
        now = self._clock()
        if self._state is BreakerState.OPEN:
            remaining = self._opened_at + self.config.wait_in_open_seconds - now
            if remaining > 0:
                self._calls[CallOutcome.NOT_PERMITTED] += 1
                raise CircuitOpenError(self.name, self._state, remaining)
            self._transition(BreakerState.HALF_OPEN)
        if self._state is BreakerState.FORCED_OPEN:
            self._calls[CallOutcome.NOT_PERMITTED] += 1
            raise CircuitOpenError(self.name, self._state, None)
        if self._state is BreakerState.HALF_OPEN:
            if self._half_open_in_flight >= self.config.permitted_calls_in_half_open:
                self._calls[CallOutcome.NOT_PERMITTED] += 1
                raise CircuitOpenError(self.name, self._state, 0.0)
            self._half_open_in_flight += 1
        return _Permit(self._generation, self._state, now)

    def _release(self, permit: _Permit) -> None:
        """Give back a half-open permit, if it belongs to the current generation."""
        if permit.generation == self._generation and permit.state is BreakerState.HALF_OPEN:
            self._half_open_in_flight -= 1

    def _cancelled(self, permit: _Permit) -> None:
        """A cancelled call: free its permit, count it apart, judge nothing."""
        self._release(permit)
        self._calls[CallOutcome.CANCELLED] += 1

    def _ignored(self, permit: _Permit) -> None:
        """An ignored exception: free the permit; it is neither success nor failure."""
        self._release(permit)
        self._calls[CallOutcome.IGNORED] += 1

    def _completed(self, permit: _Permit, *, failed: bool) -> None:
        """Record a finished call and apply the transitions its outcome calls for."""
        now = self._clock()
        slow = now - permit.started >= self.config.slow_call_duration_seconds
        self._calls[CallOutcome.FAILED if failed else CallOutcome.SUCCESSFUL] += 1
        self._slow_calls += slow
        self._release(permit)
        if permit.generation != self._generation:
            return  # judged under a state that no longer exists
        if self._state is BreakerState.CLOSED:
            snap = self._window.record(_FAILED * failed | _SLOW * slow, now)
            if snap.calls >= self.config.minimum_calls and (
                100.0 * snap.failed / snap.calls >= self.config.failure_rate_threshold
                or 100.0 * snap.slow / snap.calls >= self.config.slow_call_rate_threshold
            ):
                self._transition(BreakerState.OPEN)
        elif self._state is BreakerState.HALF_OPEN:
            if failed or slow:
                self._transition(BreakerState.OPEN)
                return
            self._half_open_successes += 1
            if self._half_open_successes >= self.config.success_threshold:
                self._transition(BreakerState.CLOSED)

    def _transition(self, to: BreakerState) -> None:
        """Enter `to`: new generation, fresh per-state bookkeeping, then tell the listeners."""
        from_state = self._state
        self._state = to
        self._generation += 1
        self._half_open_in_flight = 0
        self._half_open_successes = 0
        if to is BreakerState.OPEN:
            self._opened_at = self._clock()
        if to is BreakerState.CLOSED:
            self._window = self._new_window()
        if from_state is to:
            return  # a reset of a closed breaker (or a repeated manual call) is not a transition
        self._transitions += 1
        log.info("circuit breaker state changed", breaker=self.name, old=from_state, new=to)
        for listener in list(self._listeners):
            try:
                listener(self.name, from_state, to)
            except Exception:
                log.exception("circuit breaker listener failed", breaker=self.name)


class BreakerGuard:
    """BreakerGuards one call through a breaker; made by `CircuitBreaker.guard()`, used once."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        """A guard on `breaker` that has not acquired its permit yet."""
        self._breaker = breaker
        self._permit: _Permit | None = None

    async def __aenter__(self) -> BreakerGuard:
        """Take a permit or raise `CircuitOpenError`."""
        if self._permit is not None:
            raise RuntimeError("a breaker guard guards one call; take a new one from guard()")
        self._permit = self._breaker._acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record the outcome; never suppresses the exception (returns None)."""
        permit = self._permit
        assert permit is not None, "__aexit__ without __aenter__"
        breaker = self._breaker
        config = breaker.config
        if exc is None:
            breaker._completed(permit, failed=False)
        elif not isinstance(exc, Exception):
            # CancelledError, KeyboardInterrupt, SystemExit: nothing learnt about the dependency.
            breaker._cancelled(permit)
        elif isinstance(exc, config.ignore_exceptions):
            breaker._ignored(permit)
        else:
            breaker._completed(permit, failed=isinstance(exc, config.record_exceptions))
