"""The health model: staleness and the overall status, with an injected clock."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from agent.probes.board import Scoreboard
from agent.probes.result import CheckResult, Reason, Status

CONFIG = parse_config(
    """
checks:
  - {name: db, kind: tcp, host: h, port: 1, interval_seconds: 10}
  - {name: cache, kind: tcp, host: h, port: 2, interval_seconds: 10}
  - {name: extra, kind: tcp, host: h, port: 3, interval_seconds: 10, critical: false}
""",
    "test",
)

H, D, U, K = Status.HEALTHY, Status.DEGRADED, Status.UNHEALTHY, Status.UNKNOWN


def _board(now: float, statuses: dict[str, Status]) -> Scoreboard:
    board = Scoreboard(CONFIG.checks, clock=lambda: now)
    for name, status in statuses.items():
        board.record(
            name, CheckResult(status, None if status is H else Reason.TIMEOUT, finished_at=now)
        )
    return board


@pytest.mark.parametrize(
    ("db", "cache", "extra", "overall"),
    [
        (H, H, H, H),
        (H, H, U, D),  # a failing non-critical check makes the whole degraded
        (H, H, K, D),
        (D, H, H, D),
        (D, K, H, K),
        (U, K, H, U),  # unhealthy is worse than unknown
        (H, U, U, U),
        (K, H, H, K),
    ],
)
def test_overall_is_worst_critical_capped_by_noncritical(
    db: Status, cache: Status, extra: Status, overall: Status
) -> None:
    """Overall = worst critical status; a non-healthy non-critical check adds degraded."""
    board = _board(1000.0, {"db": db, "cache": cache, "extra": extra})

    assert overall is board.overall()


def test_result_older_than_two_intervals_is_unknown() -> None:
    """A result older than 2x its interval turns the check unknown with reason stale."""
    board = _board(1000.0, {"db": H, "cache": H, "extra": H})

    assert board.entry("db", now=1020.0).status is H
    stale = board.entry("db", now=1020.5)
    assert (stale.status, stale.reason) == (K, Reason.STALE)


def test_never_run_check_is_unknown() -> None:
    """A check with no result yet is unknown with reason not_run."""
    board = _board(1000.0, {})

    assert (board.entry("db").status, board.entry("db").reason) == (K, Reason.NOT_RUN)


def test_record_reports_only_changes() -> None:
    """record() returns the previous status on a change and None on a repeat."""
    board = _board(1000.0, {})

    assert board.record("db", CheckResult(H, finished_at=1.0)) is K
    assert board.record("db", CheckResult(H, finished_at=2.0)) is None
    assert board.record("db", CheckResult(U, Reason.TIMEOUT, finished_at=3.0)) is H


@pytest.mark.parametrize(("status", "code"), [(H, 0), (D, 1), (U, 2), (K, 3)])
def test_exit_codes(status: Status, code: int) -> None:
    """`vigil check` exit codes follow the status."""
    assert status.exit_code == code
