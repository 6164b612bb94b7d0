"""What a queue hands out: the job a submitter awaits, its outcomes, timings and queue stats."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

from agent.queue.clock import Clock
from agent.queue.errors import DeadlineExceededError
from agent.queue.scheduler import Entry

T = TypeVar("T")


class Outcome(enum.StrEnum):
    """What became of a job; the values become the `outcome` label of `vigil.queue.items`.

    Every submitted job ends in exactly one final outcome; `retried` is counted once per retry
    on top of it and is not final.
    """

    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"
    RETRIED = "retried"
    CANCELLED = "cancelled"


FINAL_OUTCOMES = frozenset(Outcome) - {Outcome.RETRIED}


class Job(Generic[T]):
    """A job in the queue: `await job` gives its result or raises what ended it.

    Awaiting a job and being cancelled cancels the job (as awaiting a task does): a queued job is
    removed, a running one is cancelled. `cancel()` does the same without awaiting. The other
    attributes are read-only for the submitter; the queue alone changes them.
    """

    __slots__ = (
        "attempts",
        "deadline",
        "entry",
        "fn",
        "future",
        "outcome",
        "priority",
        "submitted_at",
        "task",
    )

    def __init__(
        self,
        fn: Callable[[], Awaitable[T]],
        priority: str,
        submitted_at: float,
        deadline: float,
        future: asyncio.Future[T],
    ) -> None:
        """A job of class `priority` due by clock time `deadline`, resolved through `future`."""
        self.fn = fn
        self.priority = priority
        self.submitted_at = submitted_at
        self.deadline = deadline
        self.future = future
        self.attempts = 0
        self.outcome: Outcome | None = None
        self.entry: Entry[Job[Any]] | None = None
        self.task: asyncio.Task[T] | None = None

    def __await__(self) -> Generator[Any, None, T]:
        """The job's result, or the exception that ended it."""
        return self.future.__await__()

    def done(self) -> bool:
        """Whether the job has a result, an exception, or was cancelled by its submitter."""
        return self.future.done()

    def cancel(self) -> bool:
        """Cancel the job (removed if queued, cancelled if running); False if already done."""
        return self.future.cancel()

    def __repr__(self) -> str:
        """The class, deadline and outcome, never the function's arguments."""
        return f"<Job {self.priority} deadline={self.deadline:.3f} outcome={self.outcome}>"


class Timing(enum.StrEnum):
    """Which duration a timing listener is given."""

    WAIT = "wait"
    PROCESSING = "processing"


TimingListener = Callable[[Timing, float], None]


async def attempt(job: Job[T], clock: Clock, queue: str) -> T:
    """One run of `job`, cancelled at its deadline (`DeadlineExceededError`)."""
    started = clock.now()
    timer: asyncio.Timeout | None = None
    try:
        async with clock.timeout_at(job.deadline) as timer:
            return await job.fn()
    except TimeoutError as exc:
        if timer is not None and timer.expired():
            raise DeadlineExceededError(queue, clock.now() - started) from exc
        raise  # the job's own TimeoutError, handed over as it is


@dataclasses.dataclass(frozen=True, slots=True)
class QueueStats:
    """A snapshot of one queue, for publishing and for tests.

    `outcomes` are lifetime counts (never reset, so they can back monotonic counters); `depth`
    counts jobs waiting in the queue, `producers_waiting` the `submit` calls waiting to be
    admitted, `busy` the workers holding a job. `admitted` counts the jobs that entered the queue
    (a producer that waited for room counts once admitted); `refusing` says whether
    `submit_nowait` would refuse a job now (closed, full, backpressure or producers waiting).
    """

    name: str
    capacity: int
    depth: int
    depth_by_priority: dict[str, int]
    producers_waiting: int
    workers: int
    busy: int
    backpressure: bool
    oldest_wait_seconds: float
    drain_per_second: float | None
    outcomes: dict[Outcome, int]
    closed: bool
    admitted: int = 0
    refusing: bool = False
