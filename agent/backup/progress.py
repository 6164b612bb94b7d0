"""How a long operation reports what it has done (bytes through the pipeline, per phase), and
how its deadline and cancellation reach the thread doing the work: through the same calls."""

from __future__ import annotations

import threading
import time
from typing import Protocol

from agent.backup.errors import BackupError, Reason


class Progress(Protocol):
    """A sink for progress: the terminal's bars, the agent's in-progress gauges."""

    def phase(self, name: str, total_bytes: int | None) -> None:
        """A new phase starts (`backing up`, `verifying`, `restoring`...), its size if known."""

    def advance(self, done_bytes: int) -> None:
        """`done_bytes` more bytes of the current phase are done."""


class Quiet:
    """Progress nobody watches."""

    def phase(self, name: str, total_bytes: int | None) -> None:
        """Nothing to show."""

    def advance(self, done_bytes: int) -> None:
        """Nothing to show."""


class Tracker:
    """Wraps a Progress with the run's deadline and a cancel flag, checked at every report: the
    worker thread stops at its next chunk with BackupError (timeout or cancelled)."""

    def __init__(self, sink: Progress, timeout_seconds: float | None) -> None:
        self.sink = sink
        self.deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        self.timeout_seconds = timeout_seconds
        self.cancelled = threading.Event()
        self.done_bytes = 0
        self.current = ""

    def phase(self, name: str, total_bytes: int | None = None) -> None:
        """Start a phase (and check the deadline)."""
        self.check()
        self.current = name
        self.sink.phase(name, total_bytes)

    def advance(self, done_bytes: int) -> None:
        """Count bytes done (and check the deadline)."""
        self.done_bytes += done_bytes
        self.sink.advance(done_bytes)
        self.check()

    def remaining(self) -> float | None:
        """Seconds left before the deadline (for subprocess timeouts), or None."""
        if self.deadline is None:
            return None
        return max(0.001, self.deadline - time.monotonic())

    def check(self) -> None:
        """BackupError when the run is cancelled or past its deadline."""
        if self.cancelled.is_set():
            raise BackupError(Reason.CANCELLED, "the run was cancelled (the agent is stopping)")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BackupError(
                Reason.TIMEOUT, f"the run outlasted its timeout of {self.timeout_seconds:.0f} s"
            )
