"""Publishes circuit breakers and fallbacks through the catalogue's observable instruments.

Services embedding the library call `observe(meter, breakers, fallbacks)` once with their own
meter; the agent does the same for the breaker around its shared Redis store. Breakers and
fallbacks count in plain integers, so a call never pays an SDK measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agent.degradation.breaker import BreakerState, CallOutcome, CircuitBreaker
from agent.degradation.fallback import Fallback, FallbackSource
from agent.telemetry.instruments import create_instruments
from agent.telemetry.signals import CATALOGUE


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

    names = [s.name for s in CATALOGUE if s.scope == "library"]
    create_instruments(
        meter,
        names,
        {
            "vigil.breaker.state": [breaker_state],
            "vigil.breaker.calls": [breaker_calls],
            "vigil.fallback.uses": [fallback_uses],
            "vigil.fallback.exhausted": [fallback_exhausted],
        },
    )
