"""The limiters' metrics, published through the catalogue's observable instruments.

A decision only bumps plain integers (`counts.py`); these callbacks read them when a reader
collects. Services embedding the library call `observe` once with their own meter; the agent
does the same for the limiters in front of its own API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agent.limits.decision import Outcome
from agent.limits.limiter import Limiter, SyncLimiter
from agent.telemetry.catalogue import CATALOGUE
from agent.telemetry.instruments import create_instruments

AnyLimiter = Limiter | SyncLimiter


def observe(
    meter: Meter,
    limiters: Sequence[AnyLimiter] | Callable[[], Iterable[AnyLimiter]],
) -> None:
    """Create the limiter instruments on `meter`, reading `limiters` (or a callable giving the
    current ones, for registries that grow at run time)."""

    def current() -> Iterable[AnyLimiter]:
        return limiters() if callable(limiters) else limiters

    def decisions(_: CallbackOptions) -> Iterable[Observation]:
        for limiter in current():
            counts = limiter.stats().decisions
            for outcome in Outcome:
                yield Observation(counts[outcome], {"limiter": limiter.name, "outcome": outcome})

    def utilization(_: CallbackOptions) -> Iterable[Observation]:
        for limiter in current():
            yield Observation(limiter.utilization(), {"limiter": limiter.name})

    def errors(_: CallbackOptions) -> Iterable[Observation]:
        for limiter in current():
            yield Observation(limiter.stats().storage_errors, {"limiter": limiter.name})

    def factor(_: CallbackOptions) -> Iterable[Observation]:
        for limiter in current():
            yield Observation(limiter.factor, {"limiter": limiter.name})

    create_instruments(
        meter,
        [s.name for s in CATALOGUE if s.scope == "limits"],
        {
            "vigil.ratelimit.decisions": [decisions],
            "vigil.ratelimit.utilization": [utilization],
            "vigil.ratelimit.storage.errors": [errors],
            "vigil.ratelimit.factor": [factor],
        },
    )
