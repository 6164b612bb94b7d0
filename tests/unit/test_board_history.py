"""The scoreboard's history of each check: bounded, oldest first, packed without loss."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import parse_config
from agent.probes.board import HISTORY, History, Point, Scoreboard
from agent.probes.result import CheckResult, Reason, Status

CONFIG = parse_config(
    """
checks:
  - {name: db, kind: tcp, host: h, port: 1, interval_seconds: 10}
  - {name: cache, kind: tcp, host: h, port: 2, interval_seconds: 10}
""",
    "test",
)


def _result(n: int, status: Status = Status.HEALTHY, reason: Reason | None = None) -> CheckResult:
    return CheckResult(
        status, reason, "a message", {"x": n}, duration_seconds=n / 1000, finished_at=1000.0 + n
    )


def test_default_size_is_120() -> None:
    """A board keeps 120 runs per check unless told otherwise."""
    board = Scoreboard(CONFIG.checks)
    for n in range(200):
        board.record("db", _result(n))

    assert HISTORY == 120
    assert board.history_size == 120
    assert len(board.history("db")) == 120


def test_history_is_oldest_first_and_drops_the_oldest() -> None:
    """Past the bound the oldest runs go; what is left is in the order the runs finished."""
    board = Scoreboard(CONFIG.checks, history=5)
    for n in range(12):
        board.record("db", _result(n))

    assert [p.finished_at for p in board.history("db")] == [1007, 1008, 1009, 1010, 1011]


def test_history_before_the_bound_is_every_run_in_order() -> None:
    """Before the bound is reached every run is kept, oldest first."""
    board = Scoreboard(CONFIG.checks, history=5)
    for n in range(3):
        board.record("db", _result(n))

    assert [p.finished_at for p in board.history("db")] == [1000, 1001, 1002]


def test_history_keeps_status_reason_and_duration_per_check() -> None:
    """A point is the run's finished time, status, reason and duration; checks do not mix."""
    board = Scoreboard(CONFIG.checks, history=3)
    board.record("db", _result(1))
    board.record("cache", _result(2, Status.UNHEALTHY, Reason.CONNECTION_REFUSED))
    board.record("db", _result(3, Status.DEGRADED, Reason.LATENCY))

    assert board.history("db") == [
        Point(1001.0, Status.HEALTHY, None, 0.001),
        Point(1003.0, Status.DEGRADED, Reason.LATENCY, 0.003),
    ]
    assert board.history("cache") == [
        Point(1002.0, Status.UNHEALTHY, Reason.CONNECTION_REFUSED, 0.002)
    ]


def test_a_check_that_never_ran_has_an_empty_history() -> None:
    """No run, no points."""
    assert Scoreboard(CONFIG.checks).history("cache") == []


def test_unknown_check_is_a_key_error() -> None:
    """Asking for a check that is not configured raises KeyError (the API answers 404)."""
    with pytest.raises(KeyError):
        Scoreboard(CONFIG.checks).history("nope")


def test_a_history_holds_at_least_one_run() -> None:
    """A size below 1 is refused."""
    with pytest.raises(ValueError, match="at least one"):
        History(0)


@given(
    size=st.integers(min_value=1, max_value=20),
    runs=st.lists(
        st.tuples(
            st.sampled_from(list(Status)),
            st.sampled_from([None, *Reason]),
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
        ),
        max_size=60,
    ),
)
def test_history_is_the_last_size_runs(
    size: int, runs: list[tuple[Status, Reason | None, float]]
) -> None:
    """For any sequence of runs, the history is exactly the last `size` of them, in order."""
    history = History(size)
    expected = []
    for index, (status, reason, duration) in enumerate(runs):
        history.add(CheckResult(status, reason, duration_seconds=duration, finished_at=index))
        expected.append(Point(float(index), status, reason, duration))

    assert history.points() == expected[-size:]
    assert len(history) == min(size, len(runs))
