"""The settings of a queue and of its retries, checked when built: a bad value names its field."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from agent.queue.errors import QueueConfigError

# Weighted shares of the dequeues while every class has work: high 60 %, normal 30 %, low 10 %.
DEFAULT_PRIORITIES: Mapping[str, int] = {"high": 6, "normal": 3, "low": 1}


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry a job that raised one of `retry_on`, up to `max_attempts` runs in all.

    The wait after failed attempt n is `min(backoff_max_seconds, backoff_initial_seconds *
    backoff_multiplier ** (n - 1))`, shortened by up to `jitter_ratio` of itself with a value
    from the queue's random source, so retries of jobs that failed together spread out. A retry
    that could not start before the job's deadline is not made: the job fails with its last
    exception.
    """

    retry_on: tuple[type[Exception], ...]
    max_attempts: int = 3
    backoff_initial_seconds: float = 0.1
    backoff_multiplier: float = 2.0
    backoff_max_seconds: float = 5.0
    jitter_ratio: float = 0.5

    def __post_init__(self) -> None:
        """Reject settings that would never retry, retry forever or wait a negative time."""
        require(
            isinstance(self.retry_on, tuple)
            and len(self.retry_on) > 0
            and all(isinstance(t, type) and issubclass(t, Exception) for t in self.retry_on),
            "RetryPolicy.retry_on",
            # CancelledError is a BaseException: cancellation is never retried.
            "must be a non-empty tuple of Exception subclasses",
        )
        require(is_int(self.max_attempts, 2), "RetryPolicy.max_attempts", "must be an int >= 2")
        require(
            is_finite(self.backoff_initial_seconds), "RetryPolicy.backoff_initial_seconds", "> 0"
        )
        require(
            is_finite(self.backoff_multiplier, 1, inclusive=True),
            "RetryPolicy.backoff_multiplier",
            "must be finite and >= 1",
        )
        require(
            is_finite(self.backoff_max_seconds)
            and self.backoff_max_seconds >= self.backoff_initial_seconds,
            "RetryPolicy.backoff_max_seconds",
            "must be finite and >= backoff_initial_seconds",
        )
        require(
            is_finite(self.jitter_ratio, 0, inclusive=True) and self.jitter_ratio <= 1,
            "RetryPolicy.jitter_ratio",
            "must be in [0, 1]",
        )

    def retries(self, error: BaseException, attempt: int) -> bool:
        """Whether a job whose attempt number `attempt` (from 1) raised `error` may run again."""
        return attempt < self.max_attempts and isinstance(error, self.retry_on)

    def delay(self, attempt: int, random_value: float) -> float:
        """Seconds to wait after failed attempt `attempt` (from 1); `random_value` in [0, 1)."""
        # Past 64 doublings the cap has long applied; stopping there avoids a float overflow.
        base = self.backoff_initial_seconds * self.backoff_multiplier ** min(attempt - 1, 64)
        capped = min(self.backoff_max_seconds, base)
        return capped * (1.0 - self.jitter_ratio * min(max(random_value, 0.0), 1.0))


@dataclasses.dataclass(frozen=True, slots=True)
class QueueConfig:
    """One queue's bounds, classes, workers, deadlines, watermarks and retries.

    - `capacity` bounds the jobs waiting (not those running, which `max_workers` bounds).
    - `priorities` maps each class name to its share of the dequeues while every class has work;
      on a tie the class listed first goes first. `default_priority` is used when `submit` names
      none.
    - The pool keeps `min_workers` to `max_workers` workers: one more starts when a job waits
      and every worker is busy; a worker idle for `idle_seconds` exits while more than
      `min_workers` remain.
    - `default_deadline_seconds` is the deadline of a job submitted without one.
    - Backpressure turns on when the waiting jobs reach `depth_high` (default `capacity`) or the
      oldest has waited `wait_high_seconds` (default: no wait mark), and off only once they are
      at most `depth_low` (default three quarters of `depth_high`) and the oldest has waited at
      most `wait_low_seconds`.
    - `retry` (default none) retries failed jobs; `drain_grace_seconds` is how long `close()`
      lets queued and running jobs finish before cancelling them.
    - A rejection's `retry_after_seconds` is the jobs waiting divided by the drain rate measured
      over the last `rate_window_seconds`, kept within [`retry_after_min_seconds`,
      `retry_after_max_seconds`]; with no drain measured it is the maximum.
    """

    capacity: int = 1000
    priorities: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_PRIORITIES)
    )
    default_priority: str = "normal"
    min_workers: int = 1
    max_workers: int = 8
    idle_seconds: float = 30.0
    default_deadline_seconds: float = 30.0
    depth_high: int | None = None
    depth_low: int | None = None
    wait_high_seconds: float | None = None
    wait_low_seconds: float | None = None
    retry: RetryPolicy | None = None
    drain_grace_seconds: float = 30.0
    rate_window_seconds: float = 10.0
    retry_after_min_seconds: float = 0.1
    retry_after_max_seconds: float = 60.0

    def __post_init__(self) -> None:
        """Reject bounds that contradict each other or could never be met."""
        require(is_int(self.capacity, 1), "QueueConfig.capacity", "must be an int >= 1")
        require(
            isinstance(self.priorities, Mapping)
            and len(self.priorities) > 0
            and all(isinstance(k, str) and k for k in self.priorities)
            and all(is_int(v, 1) for v in self.priorities.values()),
            "QueueConfig.priorities",
            "must map at least one non-empty class name to an int share >= 1",
        )
        require(
            self.default_priority in self.priorities,
            "QueueConfig.default_priority",
            f"must be one of {list(self.priorities)}",
        )
        require(is_int(self.min_workers, 0), "QueueConfig.min_workers", "must be an int >= 0")
        require(
            is_int(self.max_workers, 1) and self.max_workers >= self.min_workers,
            "QueueConfig.max_workers",
            "must be an int >= 1 and >= min_workers",
        )
        for name in (
            "idle_seconds",
            "default_deadline_seconds",
            "rate_window_seconds",
            "retry_after_min_seconds",
        ):
            require(is_finite(getattr(self, name)), f"QueueConfig.{name}", "must be finite and > 0")
        require(
            is_finite(self.drain_grace_seconds, 0, inclusive=True),
            "QueueConfig.drain_grace_seconds",
            "must be finite and >= 0",
        )
        require(
            is_finite(self.retry_after_max_seconds)
            and self.retry_after_max_seconds >= self.retry_after_min_seconds,
            "QueueConfig.retry_after_max_seconds",
            "must be finite and >= retry_after_min_seconds",
        )
        high, low = self.depth_marks()
        require(
            is_int(high, 1) and high <= self.capacity,
            "QueueConfig.depth_high",
            "must be an int in [1, capacity]",
        )
        require(
            is_int(low, 0) and low < high,
            "QueueConfig.depth_low",
            "must be an int in [0, depth_high)",
        )
        wait_high, wait_low = self.wait_high_seconds, self.wait_low_seconds
        require(
            (wait_high is None) == (wait_low is None),
            "QueueConfig.wait_low_seconds",
            "set both wait marks or neither",
        )
        if wait_high is not None and wait_low is not None:
            require(is_finite(wait_high), "QueueConfig.wait_high_seconds", "must be finite and > 0")
            require(
                is_finite(wait_low, 0, inclusive=True) and wait_low < wait_high,
                "QueueConfig.wait_low_seconds",
                "must be finite and in [0, wait_high_seconds)",
            )
        require(
            self.retry is None or isinstance(self.retry, RetryPolicy),
            "QueueConfig.retry",
            "must be a RetryPolicy or None",
        )

    def submission(
        self, queue: str, fn: object, priority: str | None, deadline_seconds: float | None
    ) -> tuple[str, float]:
        """The class and deadline of a job submitted to `queue`, or a clear error for bad input."""
        if not callable(fn):
            raise TypeError(
                "fn must be a callable that takes no arguments and returns an awaitable"
            )
        chosen = self.default_priority if priority is None else priority
        if chosen not in self.priorities:
            known = ", ".join(self.priorities)
            raise ValueError(f"queue {queue!r}: unknown priority {chosen!r} (one of {known})")
        seconds = self.default_deadline_seconds if deadline_seconds is None else deadline_seconds
        if not is_finite(seconds):
            raise ValueError(f"queue {queue!r}: deadline_seconds must be finite and > 0")
        return chosen, seconds

    def depth_marks(self) -> tuple[int, int]:
        """The depth watermarks (high, low) with their defaults applied."""
        high = self.capacity if self.depth_high is None else self.depth_high
        low = (high * 3) // 4 if self.depth_low is None and is_int(high, 1) else self.depth_low
        return high, low if low is not None else 0


def is_int(value: object, floor: int) -> bool:
    """An int (not a bool) of at least `floor`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= floor


def is_finite(value: object, floor: float = 0.0, *, inclusive: bool = False) -> bool:
    """A finite real number (not a bool) above `floor`, or at it when `inclusive`."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return value >= floor if inclusive else value > floor


def require(ok: bool, field: str, reason: str) -> None:
    """Raise `QueueConfigError` naming `field` and `reason` unless `ok`."""
    if not ok:
        raise QueueConfigError(f"{field}: {reason}")
