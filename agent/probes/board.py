"""The scoreboard: the latest result of every check, its recent history, staleness, and the
overall status."""

from __future__ import annotations

import array
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping

from agent.config import CheckConfig
from agent.probes.result import CheckResult, Reason, Status, worst

Clock = Callable[[], float]

HISTORY = 120
"""Results kept per check by default: an hour of a 30 s check, ten minutes of a 5 s one."""

_STATUSES = tuple(Status)
_STATUS_CODES = {status: code for code, status in enumerate(_STATUSES)}
# Code 0 is "no reason" (a healthy result).
_REASONS: tuple[Reason | None, ...] = (None, *Reason)
_REASON_CODES = {reason: code for code, reason in enumerate(_REASONS)}


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A check as `/health` shows it: its config, its latest result and its effective status."""

    check: CheckConfig
    result: CheckResult | None
    status: Status
    reason: Reason | None


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One past run of a check, as its history keeps it: no message, no details."""

    finished_at: float
    status: Status
    reason: Reason | None
    duration_seconds: float


class History:
    """The last `size` runs of one check, in a ring of packed arrays (18 bytes a run).

    Packed rather than a deque of objects: with a hundred checks and the default size the
    history costs about 200 kB, where result objects would cost ten times that.
    """

    __slots__ = ("_durations", "_finished", "_next", "_reasons", "_statuses", "size")

    def __init__(self, size: int = HISTORY) -> None:
        if size < 1:
            raise ValueError(f"a history holds at least one run, not {size}")
        self.size = size
        self._finished = array.array("d")
        self._durations = array.array("d")
        self._statuses = bytearray()
        self._reasons = bytearray()
        self._next = 0  # where the next run goes once the ring is full (the oldest run)

    def add(self, result: CheckResult) -> None:
        """Remember `result`, dropping the oldest run when `size` are held."""
        status = _STATUS_CODES[result.status]
        reason = _REASON_CODES[result.reason]
        if len(self._statuses) < self.size:
            self._finished.append(result.finished_at)
            self._durations.append(result.duration_seconds)
            self._statuses.append(status)
            self._reasons.append(reason)
            return
        at = self._next
        self._finished[at] = result.finished_at
        self._durations[at] = result.duration_seconds
        self._statuses[at] = status
        self._reasons[at] = reason
        self._next = (at + 1) % self.size

    def points(self) -> list[Point]:
        """The runs held, oldest first."""
        held = len(self._statuses)
        order = [(self._next + i) % held for i in range(held)] if held else []
        return [
            Point(
                self._finished[i],
                _STATUSES[self._statuses[i]],
                _REASONS[self._reasons[i]],
                self._durations[i],
            )
            for i in order
        ]

    def __len__(self) -> int:
        return len(self._statuses)


class Scoreboard:
    """Holds latest results and the last `history` runs of each check; a result older than
    twice its check's interval counts as unknown."""

    def __init__(
        self, checks: Iterable[CheckConfig], clock: Clock = time.time, history: int = HISTORY
    ) -> None:
        self._checks = {c.name: c for c in checks}
        self._latest: dict[str, CheckResult] = {}
        self._history = {name: History(history) for name in self._checks}
        self.history_size = history
        self._clock = clock

    @property
    def checks(self) -> Mapping[str, CheckConfig]:
        """Configured checks by name."""
        return self._checks

    def record(self, name: str, result: CheckResult) -> Status | None:
        """Store `result` for check `name`; returns the previous status when it changed."""
        previous = self._latest.get(name)
        self._latest[name] = result
        past = self._history.get(name)
        if past is not None:
            past.add(result)
        if previous is None or previous.status != result.status:
            return previous.status if previous is not None else Status.UNKNOWN
        return None

    def latest(self, name: str) -> CheckResult | None:
        """The latest result of check `name`, however old."""
        return self._latest.get(name)

    def history(self, name: str) -> list[Point]:
        """The last runs of check `name`, oldest first (KeyError for an unknown name)."""
        return self._history[name].points()

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
