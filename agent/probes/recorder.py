"""Turns check runs and the scoreboard into the catalogue's metrics.

A run pays for one SDK measurement (the duration histogram). Runs, failures, in-flight and
abandoned runs are counted in plain integers and published through observable instruments at
collection time: each SDK measurement costs several microseconds per reader (DESIGN.md).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agent import __version__
from agent.probes.board import Scoreboard
from agent.probes.result import CheckResult, Reason, Status
from agent.telemetry.catalogue import CATALOGUE
from agent.telemetry.catalogue.model import Signal
from agent.telemetry.instruments import Callback, create_instruments

_STATES = tuple(Status)


class CheckRecorder:
    """Records each run and publishes current state through observable instruments.

    Attribute dicts are built once per check: the SDK hashes them on every measurement, and a
    fresh dict per run would also allocate for nothing.
    """

    def __init__(self, meter: Meter, board: Scoreboard, started_at: float | None = None) -> None:
        self._board = board
        self._started_at = time.time() if started_at is None else started_at
        self._attrs = {n: {"check": n, "kind": c.kind} for n, c in board.checks.items()}
        self._runs: Counter[tuple[str, Status]] = Counter()
        self._failures: Counter[tuple[str, Reason]] = Counter()
        self._abandoned: Counter[str] = Counter()
        self._in_flight = 0
        callbacks: dict[str, list[Callback]] = {
            "vigil.check.status": [self._observe_status],
            "vigil.check.success": [self._observe_success],
            "vigil.check.runs": [self._observe_runs],
            "vigil.check.failures": [self._observe_failures],
            "vigil.checks.in_flight": [lambda _: [Observation(self._in_flight)]],
            "vigil.checks.abandoned": [self._observe_abandoned],
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
        names = [s.name for s in CATALOGUE if s.scope == "checks"]
        instruments = create_instruments(meter, names, callbacks)
        self._duration = instruments["vigil.check.duration"]
        self._run_attrs = {
            (n, s): {**a, "outcome": s.value} for n, a in self._attrs.items() for s in _STATES
        }
        self._failure_attrs: dict[tuple[str, Reason], dict[str, str]] = {}
        self._status_attrs = {
            (n, s): {**a, "critical": str(board.checks[n].critical).lower(), "state": s.value}
            for n, a in self._attrs.items()
            for s in _STATES
        }

    def started(self) -> None:
        """A run began."""
        self._in_flight += 1

    def finished(self, name: str, result: CheckResult) -> None:
        """A run of check `name` ended with `result`."""
        self._in_flight -= 1
        self._duration.record(result.duration_seconds, self._attrs[name])
        self._runs[name, result.status] += 1
        if result.status in (Status.UNHEALTHY, Status.UNKNOWN) and result.reason is not None:
            self._failures[name, result.reason] += 1

    def abandoned(self, name: str) -> None:
        """A run of check `name` ignored its cancellation and was left behind."""
        self._abandoned[name] += 1

    # Observable callbacks run on the collecting thread: they read memory only, no I/O.
    # Every check's runs and abandoned series exist from the start, so `increase()` and
    # absent-alerts behave at boot.
    def _observe_runs(self, _: CallbackOptions) -> Iterable[Observation]:
        runs = self._runs.copy()
        for key, attrs in self._run_attrs.items():
            yield Observation(runs[key], attrs)

    def _observe_failures(self, _: CallbackOptions) -> Iterable[Observation]:
        for (name, reason), count in self._failures.copy().items():
            attrs = self._failure_attrs.get((name, reason))
            if attrs is None:
                attrs = {**self._attrs[name], "reason": reason.value}
                self._failure_attrs[name, reason] = attrs
            yield Observation(count, attrs)

    def _observe_abandoned(self, _: CallbackOptions) -> Iterable[Observation]:
        abandoned = self._abandoned.copy()
        for name, attrs in self._attrs.items():
            yield Observation(abandoned[name], attrs)

    def _observe_status(self, _: CallbackOptions) -> Iterable[Observation]:
        for e in self._board.entries():
            for state in _STATES:
                yield Observation(
                    1 if e.status is state else 0, self._status_attrs[e.check.name, state]
                )

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
