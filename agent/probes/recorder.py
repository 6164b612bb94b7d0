"""Turns check runs and the scoreboard into the catalogue's metrics."""

from __future__ import annotations

import time
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agent import __version__
from agent.probes.board import Scoreboard
from agent.probes.result import CheckResult, Status
from agent.telemetry.instruments import Callback, create_instruments
from agent.telemetry.signals import CATALOGUE, Signal

_STATES = tuple(Status)


class CheckRecorder:
    """Records each run (histogram, counters) and publishes current state through observables.

    Attribute dicts are built once per check: the SDK hashes them on every measurement, and a
    fresh dict per run would also allocate for nothing.
    """

    def __init__(self, meter: Meter, board: Scoreboard, started_at: float | None = None) -> None:
        self._board = board
        self._started_at = time.time() if started_at is None else started_at
        self._attrs = {n: {"check": n, "kind": c.kind} for n, c in board.checks.items()}
        callbacks: dict[str, list[Callback]] = {
            "vigil.check.status": [self._observe_status],
            "vigil.check.success": [self._observe_success],
            "vigil.check.last_run.timestamp": [self._observe_last_run],
            "vigil.check.timeout": [self._observe_config("timeout_seconds")],
            "vigil.check.interval": [self._observe_config("interval_seconds")],
            "vigil.health.status": [self._observe_overall],
            "vigil.agent.info": [lambda _: [Observation(1, {"version": __version__})]],
            "vigil.agent.start.timestamp": [lambda _: [Observation(self._started_at)]],
        }
        for signal in CATALOGUE:
            if signal.detail is not None:
                callbacks[signal.name] = [self._observe_detail(signal)]
        self._instruments = create_instruments(meter, [s.name for s in CATALOGUE], callbacks)
        self._duration = self._instruments["vigil.check.duration"]
        self._runs = self._instruments["vigil.check.runs"]
        self._failures = self._instruments["vigil.check.failures"]
        self._in_flight = self._instruments["vigil.checks.in_flight"]
        self._abandoned = self._instruments["vigil.checks.abandoned"]
        self._run_attrs = {
            (n, s): {**a, "outcome": s.value} for n, a in self._attrs.items() for s in _STATES
        }
        # Series that exist from the start make `increase()` and absent-alerts behave at boot.
        self._in_flight.add(0)
        for attrs in self._run_attrs.values():
            self._runs.add(0, attrs)
        for attrs in self._attrs.values():
            self._abandoned.add(0, attrs)

    def started(self) -> None:
        """A run began."""
        self._in_flight.add(1)

    def finished(self, name: str, result: CheckResult) -> None:
        """A run of check `name` ended with `result`."""
        self._in_flight.add(-1)
        attrs = self._attrs[name]
        self._duration.record(result.duration_seconds, attrs)
        self._runs.add(1, self._run_attrs[name, result.status])
        if result.status in (Status.UNHEALTHY, Status.UNKNOWN) and result.reason is not None:
            self._failures.add(1, {**attrs, "reason": result.reason.value})

    def abandoned(self, name: str) -> None:
        """A run of check `name` ignored its cancellation and was left behind."""
        self._abandoned.add(1, self._attrs[name])

    # Observable callbacks run on the exporter's thread: they read the scoreboard only, no I/O.
    def _observe_status(self, _: CallbackOptions) -> Iterable[Observation]:
        for e in self._board.entries():
            base = {**self._attrs[e.check.name], "critical": str(e.check.critical).lower()}
            for state in _STATES:
                yield Observation(1 if e.status is state else 0, {**base, "state": state.value})

    def _observe_success(self, _: CallbackOptions) -> Iterable[Observation]:
        for e in self._board.entries():
            ok = e.status in (Status.HEALTHY, Status.DEGRADED)
            yield Observation(1 if ok else 0, self._attrs[e.check.name])

    def _observe_last_run(self, _: CallbackOptions) -> Iterable[Observation]:
        for name, attrs in self._attrs.items():
            result = self._board.latest(name)
            if result is not None:
                yield Observation(result.finished_at, attrs)

    def _observe_config(self, key: str) -> Callback:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            for name, check in self._board.checks.items():
                yield Observation(getattr(check, key), self._attrs[name])

        return observe

    def _observe_overall(self, _: CallbackOptions) -> Iterable[Observation]:
        overall = self._board.overall()
        for state in _STATES:
            yield Observation(1 if overall is state else 0, {"state": state.value})

    def _observe_detail(self, signal: Signal) -> Callback:
        key = signal.detail
        kinds = set(signal.kinds)
        names = [n for n, c in self._board.checks.items() if c.kind in kinds]

        def observe(_: CallbackOptions) -> Iterable[Observation]:
            for name in names:
                result = self._board.latest(name)
                value = result.details.get(key) if result is not None and key else None
                if isinstance(value, bool):
                    value = int(value)
                if isinstance(value, int | float):
                    yield Observation(value, {"check": name})

        return observe
