"""Backpressure with hysteresis on depth and wait, and the drain rate behind Retry-After (pure)."""

from __future__ import annotations

import collections


class Watermarks:
    """On at a high mark, off only at a low one, for depth and (optionally) wait.

    `update(depth, wait_seconds)` turns backpressure on when `depth >= depth_high` or
    `wait_seconds >= wait_high_seconds`, and off only when `depth <= depth_low` and
    `wait_seconds <= wait_low_seconds`; between the marks the state stays as it was, so a signal
    hovering around one mark cannot make it flap. The bounds are checked by `QueueConfig`.
    """

    def __init__(
        self,
        depth_high: int,
        depth_low: int,
        wait_high_seconds: float | None = None,
        wait_low_seconds: float | None = None,
    ) -> None:
        """Marks with `depth_low < depth_high` and, when set, `wait_low < wait_high`."""
        self.depth_high = depth_high
        self.depth_low = depth_low
        self.wait_high_seconds = wait_high_seconds
        self.wait_low_seconds = wait_low_seconds
        self.active = False
        self.transitions = 0

    def update(self, depth: int, wait_seconds: float) -> bool:
        """Apply one reading of the depth and the wait; whether backpressure is on after it."""
        if self.active:
            wait_low = self.wait_low_seconds
            if depth <= self.depth_low and (wait_low is None or wait_seconds <= wait_low):
                self.active = False
                self.transitions += 1
        else:
            wait_high = self.wait_high_seconds
            if depth >= self.depth_high or (wait_high is not None and wait_seconds >= wait_high):
                self.active = True
                self.transitions += 1
        return self.active


class DrainRate:
    """Jobs leaving the queue per second, measured over a sliding window of recent dequeues.

    It keeps the times of at most `keep` recent dequeues inside the window: the rate is how many
    there were divided by the time since the first of them, so a queue that stopped draining
    shows a falling rate instead of its last busy one.
    """

    def __init__(self, window_seconds: float, keep: int = 1024) -> None:
        """Measure over the last `window_seconds`, remembering at most `keep` dequeue times."""
        self._window = window_seconds
        self._times: collections.deque[float] = collections.deque(maxlen=keep)

    def record(self, now: float) -> None:
        """One job left the queue at `now`."""
        self._times.append(now)

    def per_second(self, now: float) -> float | None:
        """Dequeues per second over the window ending at `now`; None when none were measured."""
        times = self._times
        while times and times[0] < now - self._window:
            times.popleft()
        if not times:
            return None
        # At least a millisecond: a burst of dequeues at one instant is not an infinite rate.
        return len(times) / max(now - times[0], 0.001)


def retry_after_seconds(
    waiting: int, per_second: float | None, floor_seconds: float, ceiling_seconds: float
) -> float:
    """Little's law: the time for the `waiting` jobs to drain at `per_second`, within bounds.

    With no measured rate (nothing has left the queue within the window) the estimate is the
    ceiling: either the queue has just started or it has stopped draining.
    """
    if per_second is None or per_second <= 0:
        return ceiling_seconds
    return min(ceiling_seconds, max(floor_seconds, waiting / per_second))
