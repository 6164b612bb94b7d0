"""The scoreboard: the latest result of every check, staleness, and the overall status."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping

from agent.config import CheckConfig
from agent.probes.result import CheckResult, Reason, Status, worst

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A check as `/health` shows it: its config, its latest result and its effective status."""

    check: CheckConfig
    result: CheckResult | None
    status: Status
    reason: Reason | None


class Scoreboard:
    """Holds latest results; a result older than twice its check's interval counts as unknown."""

    def __init__(self, checks: Iterable[CheckConfig], clock: Clock = time.time) -> None:
        self._checks = {c.name: c for c in checks}
        self._latest: dict[str, CheckResult] = {}
        self._clock = clock

    @property
    def checks(self) -> Mapping[str, CheckConfig]:
        """Configured checks by name."""
        return self._checks

    def record(self, name: str, result: CheckResult) -> Status | None:
        """Store `result` for check `name`; returns the previous status when it changed."""
        previous = self._latest.get(name)
        self._latest[name] = result
        if previous is None or previous.status != result.status:
            return previous.status if previous is not None else Status.UNKNOWN
        return None

    def latest(self, name: str) -> CheckResult | None:
        """The latest result of check `name`, however old."""
        return self._latest.get(name)

    def entry(self, name: str, now: float | None = None) -> Entry:
        """Check `name` with its effective status at `now`."""
        check = self._checks[name]
        result = self._latest.get(name)
        now = self._clock() if now is None else now
        if result is None:
            return Entry(check, None, Status.UNKNOWN, Reason.NOT_RUN)
        if now - result.finished_at > 2 * check.interval_seconds:
            return Entry(check, result, Status.UNKNOWN, Reason.STALE)
        return Entry(check, result, result.status, result.reason)

    def entries(self, now: float | None = None) -> list[Entry]:
        """Every check's entry at `now`, in config order."""
        now = self._clock() if now is None else now
        return [self.entry(name, now) for name in self._checks]

    def overall(self, now: float | None = None) -> Status:
        """Worst status of the critical checks; a failing non-critical one makes it degraded."""
        return overall_status(self.entries(now))


def overall_status(entries: Iterable[Entry]) -> Status:
    """The health model's aggregation over `entries`."""
    critical: list[Status] = []
    status = Status.HEALTHY
    for e in entries:
        if e.check.critical:
            critical.append(e.status)
        elif e.status is not Status.HEALTHY:
            status = Status.DEGRADED
    return worst([status, *critical])
