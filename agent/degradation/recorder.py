"""Publishes the degradation engine, its webhook and the flags through observable instruments.

Everything is counted in plain integers where it happens (a flag evaluation must not pay an SDK
measurement); the callbacks only read those counters and the engine's state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agent.degradation.engine import DegradationEngine
from agent.degradation.flags import Flags
from agent.degradation.levels import Level
from agent.telemetry.instruments import Callback, create_instruments
from agent.telemetry.signals import CATALOGUE


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
        for outcome in ("accepted", "unauthorized", "invalid", "too_large", "unavailable"):
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
