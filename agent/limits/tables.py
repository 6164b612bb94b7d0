"""Where the memory storage keeps one limit's states, and how they expire without a sweeper.

- `Generations` (GCRA family, sliding log): a current and a previous generation of keys; a
  generation is dropped wholesale once every state in it has outlived the limit's horizon (the
  longest a state written at `t` can still change a decision).
- `Windows` (fixed and sliding window): the counts of the current and the previous aligned
  window; when time enters a new window the older counts are dropped wholesale.

Either way memory follows the keys seen recently and no thread ever scans a table.
"""

from __future__ import annotations

from typing import Any


class Generations:
    """Per-key states in two generations of `horizon` nanoseconds each."""

    __slots__ = ("current", "horizon", "previous", "rotate_at")

    def __init__(self, horizon: int) -> None:
        self.current: dict[str, Any] = {}
        self.previous: dict[str, Any] = {}
        self.horizon = horizon
        # Far in the past: the first decision starts the first generation.
        self.rotate_at = -(1 << 62)

    def get(self, key: str, now: int) -> Any:
        """The key's state, or None when it is at rest or has expired."""
        if self.rotate_at <= now:
            self.rotate(now)
        state = self.current.get(key)
        return self.previous.get(key) if state is None else state

    def rotate(self, now: int) -> None:
        """Start a new generation; drop the one whose states have all outlived the horizon."""
        if now >= self.rotate_at + self.horizon:
            # Nothing was written for a whole horizon: both generations are meaningless.
            self.previous = {}
        else:
            self.previous = self.current
        self.current = {}
        self.rotate_at = now + self.horizon

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


class Windows:
    """Counts per key in the current aligned window `[start, start + period)` and the one before."""

    __slots__ = ("current", "end", "period", "previous", "start")

    def __init__(self, period: int) -> None:
        self.period = period
        self.current: dict[str, int] = {}
        self.previous: dict[str, int] = {}
        self.start = -(1 << 62)
        self.end = self.start + period

    def roll(self, now: int) -> None:
        """Move to the window holding `now`; the counts of a window two back are dropped."""
        start = now - now % self.period
        if start == self.start + self.period:
            self.previous = self.current
        else:
            self.previous = {}
        self.current = {}
        self.start = start
        self.end = start + self.period

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)
