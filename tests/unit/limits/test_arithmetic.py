"""The pure arithmetic of each strategy, by table: state, time and cost in; verdict out."""

from __future__ import annotations

from collections import deque

import pytest

from agent.limits import arithmetic


@pytest.mark.parametrize(
    ("state", "now", "cost", "shaping", "expected"),
    [
        # At rest: admitted, one interval of the three-interval window spent.
        (None, 1000, 1, False, (True, 2, 0, 100, 0, 1100)),
        # Full: denied until the TAT drains one interval; the state is unchanged.
        (1300, 1000, 1, False, (False, 0, 100, 300, 0, 1300)),
        # Shaping: admitted, but after the one interval still queued ahead of it.
        (1100, 1000, 1, True, (True, 1, 0, 200, 100, 1200)),
        # A shaped denial has no delay to wait for.
        (1300, 1000, 1, True, (False, 0, 100, 300, 0, 1300)),
        # A TAT in the past counts as at rest.
        (500, 1000, 2, False, (True, 1, 0, 200, 0, 1200)),
    ],
)
def test_tat(
    state: int | None, now: int, cost: int, shaping: bool, expected: tuple[object, ...]
) -> None:
    """GCRA with a 100-unit interval and a capacity of 3."""
    assert arithmetic.tat(state, now, cost, 100, 3, shaping) == expected


@pytest.mark.parametrize(
    ("state", "now", "cost", "expected"),
    [
        (None, 1050, 2, (True, 1, 0, 50, 0, (1000, 2))),
        ((1000, 2), 1060, 2, (False, 1, 40, 40, 0, (1000, 2))),
        # A count of an earlier window is forgotten.
        ((900, 3), 1060, 1, (True, 2, 0, 40, 0, (1000, 1))),
    ],
)
def test_fixed_window(
    state: tuple[int, int] | None, now: int, cost: int, expected: tuple[object, ...]
) -> None:
    """Three per aligned window of 100."""
    assert arithmetic.fixed_window(state, now, cost, 3, 100) == expected


@pytest.mark.parametrize(
    ("state", "now", "cost", "grain", "expected"),
    [
        (None, 1050, 1, 1, (True, 3, 0, 150, 0, (1000, 1, 0))),
        # The previous window (4) half over weighs 2: room for 2 more.
        ((900, 4, 0), 1050, 1, 1, (True, 1, 0, 150, 0, (1000, 1, 4))),
        # 2 here and 4 before at half weight: full; the 3rd fits once 1/4 more of it decays.
        ((1000, 2, 4), 1050, 1, 1, (False, 0, 25, 150, 0, (1000, 2, 4))),
        # The same wait rounded up to a grain of 10.
        ((1000, 2, 4), 1050, 1, 10, (False, 0, 30, 150, 0, (1000, 2, 4))),
        # This window alone is full: the wait runs into the next window.
        ((1000, 4, 0), 1050, 1, 1, (False, 0, 75, 150, 0, (1000, 4, 0))),
        # Counts two windows back weigh nothing.
        ((800, 4, 4), 1050, 1, 1, (True, 3, 0, 150, 0, (1000, 1, 0))),
        # A previous window only: at rest once this one ends.
        ((900, 1, 0), 1050, 0, 1, (True, 3, 0, 50, 0, (1000, 0, 1))),
    ],
)
def test_sliding_window(
    state: tuple[int, int, int] | None,
    now: int,
    cost: int,
    grain: int,
    expected: tuple[object, ...],
) -> None:
    """Four per window of 100, the previous window weighted by its unexpired share."""
    assert arithmetic.sliding_window(state, now, cost, 4, 100, grain) == expected


def test_sliding_reset_and_retry_by_hand() -> None:
    """At rest after both windows, after the previous one, or at once; waits rounded to grain."""
    assert arithmetic.sliding_reset(2, 4, 50, 100) == 150
    assert arithmetic.sliding_reset(0, 3, 50, 100) == 50
    assert arithmetic.sliding_reset(0, 0, 50, 100) == 0
    assert arithmetic.sliding_retry(2, 3, 50, 1, 4, 100) == 17  # 100 - 100 // 3 - 50 = 17
    assert arithmetic.sliding_retry(2, 3, 50, 1, 4, 100, 1000) == 1000


def test_sliding_log() -> None:
    """Leave times, oldest first: trimmed as they pass; a denial waits for enough to leave."""
    assert arithmetic.sliding_log(None, 1000, 1, 2, 100) == (True, 1, 0, 100, 0, deque())
    log = deque([1050, 1080])
    assert arithmetic.sliding_log(log, 1060, 1, 2, 100) == (True, 0, 0, 100, 0, deque([1080]))
    full = deque([1070, 1080])
    assert arithmetic.sliding_log(full, 1060, 2, 2, 100) == (False, 0, 20, 20, 0, full)
    assert arithmetic.sliding_log(full, 1060, 1, 2, 100)[2] == 10
    assert arithmetic.log_append(deque([900]), 1100, 3) == deque([900, 1100, 1100, 1100])
    assert arithmetic.log_append(deque(), 1100, 1) == deque([1100])


def test_sliding_window_counts_in_whole_units_by_default() -> None:
    """Without a grain the wait is exact in the caller's unit (Redis's microseconds)."""
    assert arithmetic.sliding_window((1000, 2, 3), 1050, 1, 4, 100)[2] == 17
