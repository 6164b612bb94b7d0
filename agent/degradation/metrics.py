"""The degradation package's metrics, published through the catalogue's observable instruments.

Everything is counted in plain integers where it happens (a flag evaluation or a breaker call
must not pay an SDK measurement); the callbacks only read those counters and the engine's state.

- `observe(meter, breakers, fallbacks)`: the library's circuit breakers and fallbacks. Services
  embedding the library call it once with their own meter; the agent does the same for the
  breaker around its shared Redis store.
- `DegradationRecorder`: the agent's engine, its webhook outcome counts and its flags.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agent.degradation.breaker import BreakerState, CallOutcome, CircuitBreaker
from agent.degradation.engine import DegradationEngine
from agent.degradation.fallback import Fallback, FallbackSource
from agent.degradation.flags import Flags
from agent.degradation.levels import Level
from agent.telemetry.catalogue import CATALOGUE
from agent.telemetry.instruments import Callback, create_instruments


def observe(
    meter: Meter,
    breakers: Sequence[CircuitBreaker] | Callable[[], Iterable[CircuitBreaker]] = (),
    fallbacks: Sequence[Fallback[..., Any]] | Callable[[], Iterable[Fallback[..., Any]]] = (),
) -> None:
    """Create the library's instruments on `meter`, reading `breakers` and `fallbacks`.

    Each may be a fixed sequence or a callable returning the current ones (for registries that
    grow at run time).
    """

    def current_breakers() -> Iterable[CircuitBreaker]:
        return breakers() if callable(breakers) else breakers

    def current_fallbacks() -> Iterable[Fallback[..., Any]]:
        return fallbacks() if callable(fallbacks) else fallbacks

    def breaker_state(_: CallbackOptions) -> Iterable[Observation]:
        for breaker in current_breakers():
            state = breaker.state
            for candidate in BreakerState:
                yield Observation(
                    1 if candidate is state else 0,
                    {"breaker": breaker.name, "state": candidate.value},
                )

    def breaker_calls(_: CallbackOptions) -> Iterable[Observation]:
        for breaker in current_breakers():
            calls = breaker.stats().calls
            for outcome in CallOutcome:
                yield Observation(
                    calls.get(outcome, 0), {"breaker": breaker.name, "outcome": outcome.value}
                )

    def fallback_uses(_: CallbackOptions) -> Iterable[Observation]:
        for fallback in current_fallbacks():
            served = fallback.stats().served
            for source in FallbackSource:
                yield Observation(
                    served.get(source, 0), {"fallback": fallback.name, "source": source.value}
                )

    def fallback_exhausted(_: CallbackOptions) -> Iterable[Observation]:
        for fallback in current_fallbacks():
            yield Observation(fallback.stats().exhausted, {"fallback": fallback.name})

    # The library's other primitives (work queues) publish their own signals.
    callbacks: dict[str, list[Callback]] = {
        "vigil.breaker.state": [breaker_state],
        "vigil.breaker.calls": [breaker_calls],
        "vigil.fallback.uses": [fallback_uses],
        "vigil.fallback.exhausted": [fallback_exhausted],
    }
    create_instruments(meter, list(callbacks), callbacks)


class DegradationRecorder:
    """Observable instruments over one engine, its webhook outcome counts and its flags."""

    def __init__(
        self,
        meter: Meter,
        engine: DegradationEngine,
        flags: Flags,
        webhook_outcomes: Counter[str],
        reconcile_runs: Counter[str] | None = None,
    ) -> None:
        self._engine = engine
        self._reconcile = reconcile_runs if reconcile_runs is not None else Counter()
        self._flags = flags
        self._outcomes = webhook_outcomes
        callbacks: dict[str, list[Callback]] = {
            "vigil.degradation.level": [self._level],
            "vigil.degradation.level.index": [lambda _: [Observation(int(engine.level))]],
            "vigil.degradation.transitions": [self._transitions],
            "vigil.degradation.suppressed": [self._suppressed],
            "vigil.degradation.alerts.active": [
                lambda _: [Observation(len(engine.state.book.active))]
            ],
            "vigil.degradation.webhook.requests": [self._webhook],
            "vigil.degradation.pinned": [
                lambda _: [Observation(1 if engine.state.pin is not None else 0)]
            ],
            "vigil.degradation.pin.set.timestamp": [self._pin_set],
            "vigil.degradation.pin.expiry.timestamp": [self._pin_expiry],
            "vigil.degradation.state.staleness": [lambda _: [Observation(engine.staleness())]],
            "vigil.degradation.flags.off": [self._flags_off],
            "vigil.flags.evaluations": [self._evaluations],
            "vigil.degradation.reconcile.runs": [self._reconciled],
        }
        names = [s.name for s in CATALOGUE if s.scope == "degradation"]
        create_instruments(meter, names, callbacks)

    def _level(self, _: CallbackOptions) -> Iterable[Observation]:
        current = self._engine.level
        for level in Level:
            yield Observation(1 if level is current else 0, {"level": level.label})

    def _transitions(self, _: CallbackOptions) -> Iterable[Observation]:
        for (before, after, cause), count in self._engine.transitions.copy().items():
            yield Observation(count, {"from": before, "to": after, "cause": cause})

    def _suppressed(self, _: CallbackOptions) -> Iterable[Observation]:
        counts = self._engine.suppressions.copy()
        for reason in ("hold", "flap"):
            yield Observation(counts[reason], {"reason": reason})

    def _webhook(self, _: CallbackOptions) -> Iterable[Observation]:
        counts = self._outcomes.copy()
        for outcome in (
            "accepted",
            "unauthorized",
            "invalid",
            "too_large",
            "unavailable",
            "overloaded",
        ):
            yield Observation(counts[outcome], {"outcome": outcome})

    def _pin_set(self, _: CallbackOptions) -> Iterable[Observation]:
        pin = self._engine.state.pin
        if pin is not None:
            yield Observation(pin.set_at)

    def _pin_expiry(self, _: CallbackOptions) -> Iterable[Observation]:
        pin = self._engine.state.pin
        if pin is not None and pin.expires_at is not None:
            yield Observation(pin.expires_at)

    def _flags_off(self, _: CallbackOptions) -> Iterable[Observation]:
        for flag in sorted(self._engine.state.flags_off):
            yield Observation(1, {"flag": flag})

    def _reconciled(self, _: CallbackOptions) -> Iterable[Observation]:
        counts = self._reconcile.copy()
        for outcome in ("ok", "unreachable", "invalid", "unavailable"):
            yield Observation(counts[outcome], {"outcome": outcome})

    def _evaluations(self, _: CallbackOptions) -> Iterable[Observation]:
        for (flag, reason), count in self._flags.stats().items():
            yield Observation(count, {"flag": flag, "reason": reason.value})
