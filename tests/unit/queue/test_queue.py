"""The work queue on a fake clock: results, classes, backpressure, deadlines, retries, the pool."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agent.queue.config import QueueConfig, RetryPolicy
from agent.queue.errors import (
    DeadlineExceededError,
    ExpiredError,
    QueueClosedError,
    RejectedError,
)
from agent.queue.job import Outcome, Timing
from agent.queue.manager import WorkQueue
from tests.unit.queue.clock import FakeClock, settle


def make(clock: FakeClock, **options: Any) -> WorkQueue:
    """A queue on `clock` with small defaults and a seeded random source."""
    settings: dict[str, Any] = {"capacity": 4, "min_workers": 1, "max_workers": 1}
    settings.update(options)
    return WorkQueue(
        "jobs", QueueConfig(**settings), clock=clock, random_source=random.Random(7).random
    )


def takes(
    clock: FakeClock, seconds: float, result: object = None, ran: list[object] | None = None
) -> Callable[[], Awaitable[object]]:
    """A job that takes `seconds` of fake time, notes that it ran, and returns `result`."""

    async def job() -> object:
        if ran is not None:
            ran.append(result)
        await clock.sleep(seconds)
        return result

    return job


async def test_submit_returns_the_result() -> None:
    """`await submit(fn)` gives what fn returned, once it ran."""
    clock = FakeClock()
    queue = make(clock)
    call = asyncio.create_task(queue.submit(takes(clock, 2.0, "done")))
    await settle()
    assert not call.done()

    await clock.advance(2.0)

    assert call.result() == "done"
    assert queue.stats().outcomes[Outcome.COMPLETED] == 1


async def test_a_failing_job_raises_its_own_exception() -> None:
    """The job's exception reaches the submitter unchanged and counts as failed."""
    clock = FakeClock()
    queue = make(clock)

    async def broken() -> None:
        raise LookupError("no such order")

    with pytest.raises(LookupError, match="no such order"):
        await queue.submit(broken)
    assert queue.stats().outcomes[Outcome.FAILED] == 1


async def test_bad_input_is_refused_before_anything_is_counted() -> None:
    """An unknown class, a bad deadline or a non-callable raise at once and count nothing."""
    clock = FakeClock()
    queue = make(clock)

    with pytest.raises(
        ValueError, match="unknown priority 'urgent' \\(one of high, normal, low\\)"
    ):
        await queue.submit(takes(clock, 1), priority="urgent")
    with pytest.raises(ValueError, match="deadline_seconds must be finite and > 0"):
        queue.submit_nowait(takes(clock, 1), deadline_seconds=0)
    with pytest.raises(TypeError, match="fn must be a callable"):
        queue.submit_nowait("not a function")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        WorkQueue("")
    assert sum(queue.stats().outcomes.values()) == 0


async def test_classes_share_the_workers_by_weight() -> None:
    """With all classes waiting, one worker runs them 6:3:1 (high, normal, low)."""
    clock = FakeClock()
    queue = make(clock, capacity=100)
    order: list[object] = []
    gate = asyncio.Event()

    async def hold() -> None:
        order.append("normal")
        await gate.wait()

    first = queue.submit_nowait(hold)
    await settle()
    jobs = [
        queue.submit_nowait(takes(clock, 0, name, order), priority=name)
        for name in ("low", "normal", "high")
        for _ in range(20)
    ]
    gate.set()
    await first
    await asyncio.gather(*(j for j in jobs))

    assert [order[:10].count(n) for n in ("high", "normal", "low")] == [6, 3, 1]


async def test_nowait_rejects_when_full_with_little_law_retry_after() -> None:
    """A full queue rejects with `full` and Retry-After = waiting / measured drain rate."""
    clock = FakeClock()
    queue = make(clock, capacity=4, depth_high=4, depth_low=1)
    jobs = [queue.submit_nowait(takes(clock, 1.0)) for _ in range(3)]
    await clock.advance(1.0)  # one done, the next running: one dequeue per second measured
    await clock.advance(1.0)
    for _ in range(4):
        queue.submit_nowait(takes(clock, 1.0))

    with pytest.raises(RejectedError) as caught:
        queue.submit_nowait(takes(clock, 1.0))

    error = caught.value
    assert error.reason == "full"
    stats = queue.stats()
    assert stats.depth == 4
    assert error.retry_after_seconds == pytest.approx(4 / stats.drain_per_second)  # type: ignore[operator]
    assert "rejected the job (full): retry in" in str(error)
    assert stats.outcomes[Outcome.REJECTED] == 1
    del jobs


async def test_retry_after_is_the_ceiling_before_anything_drained() -> None:
    """With no dequeue measured yet, the estimate is `retry_after_max_seconds`."""
    clock = FakeClock()
    queue = make(clock, capacity=1, min_workers=0, max_workers=1, retry_after_max_seconds=42.0)
    gate = asyncio.Event()
    queue.submit_nowait(gate.wait)
    # No worker has taken the first job yet (nothing has drained): the second finds it full.
    with pytest.raises(RejectedError) as caught:
        queue.submit_nowait(gate.wait)

    assert caught.value.retry_after_seconds == 42.0
    gate.set()
    await settle()


async def test_backpressure_holds_producers_until_the_low_mark() -> None:
    """Above the high mark submit waits and submit_nowait rejects, until the low mark."""
    clock = FakeClock()
    queue = make(clock, capacity=10, depth_high=4, depth_low=1)
    finished = [queue.submit_nowait(takes(clock, 1.0))]
    await settle()
    finished += [queue.submit_nowait(takes(clock, 1.0)) for _ in range(4)]  # 1 running, 4 waiting
    assert queue.backpressure_active
    producer = asyncio.create_task(queue.submit(takes(clock, 1.0, "late")))
    await settle()

    with pytest.raises(RejectedError, match="backpressure"):
        queue.submit_nowait(takes(clock, 1.0))
    await clock.advance(2.0)  # 2 waiting: still between the marks
    assert queue.backpressure_active
    assert not producer.done()
    assert queue.stats().producers_waiting == 1
    await clock.advance(1.0)  # 1 waiting: at the low mark, the producer is admitted

    assert not queue.backpressure_active
    assert queue.stats().producers_waiting == 0
    await clock.advance(3.0)
    assert producer.result() == "late"
    await asyncio.gather(*finished)


async def test_wait_watermark_turns_backpressure_on() -> None:
    """A job waiting past `wait_high_seconds` turns backpressure on even at a low depth."""
    clock = FakeClock()
    queue = make(clock, capacity=10, wait_high_seconds=5.0, wait_low_seconds=1.0)
    queue.submit_nowait(takes(clock, 10.0))
    queue.submit_nowait(takes(clock, 1.0))
    await settle()
    assert not queue.backpressure_active

    await clock.advance(5.0)

    assert queue.stats().oldest_wait_seconds == 5.0
    assert queue.backpressure_active
    await clock.advance(5.0)  # the waiting job is taken: nothing waits any more
    assert not queue.backpressure_active


async def test_an_expired_job_is_dropped_and_never_run() -> None:
    """A job whose deadline passes while it waits is not run; its submitter gets ExpiredError."""
    clock = FakeClock()
    queue = make(clock)
    ran: list[object] = []
    queue.submit_nowait(takes(clock, 10.0, "first", ran))
    late = queue.submit_nowait(takes(clock, 1.0, "late", ran), deadline_seconds=5.0)

    await clock.advance(10.0)

    with pytest.raises(ExpiredError, match=r"deadline passed after 10\.000s of waiting") as caught:
        await late
    assert caught.value.waited_seconds == 10.0
    assert ran == ["first"]
    assert queue.stats().outcomes[Outcome.EXPIRED] == 1


async def test_a_job_still_running_at_its_deadline_is_cancelled() -> None:
    """The deadline bounds the run: DeadlineExceededError, counted failed, the job cancelled."""
    clock = FakeClock()
    queue = make(clock)
    stopped: list[str] = []

    async def slow() -> None:
        try:
            await takes(clock, 60.0)()
        except asyncio.CancelledError:
            stopped.append("cancelled")
            raise

    job = queue.submit_nowait(slow, deadline_seconds=3.0)
    await clock.advance(3.0)

    with pytest.raises(DeadlineExceededError, match=r"ran 3\.000s and was cancelled"):
        await job
    assert stopped == ["cancelled"]
    assert queue.stats().outcomes[Outcome.FAILED] == 1


async def test_a_timeout_raised_by_the_job_is_not_a_deadline() -> None:
    """A TimeoutError of the job's own is handed over as it is."""
    clock = FakeClock()
    queue = make(clock)

    async def own_timeout() -> None:
        raise TimeoutError("upstream took too long")

    with pytest.raises(TimeoutError, match="upstream") as caught:
        await queue.submit(own_timeout)
    assert not isinstance(caught.value, DeadlineExceededError)


async def test_retries_back_off_with_jitter_then_succeed() -> None:
    """Attempts are spaced by the jittered backoff; the third succeeds; two retries counted."""
    clock = FakeClock()
    retry = RetryPolicy((ConnectionError,), max_attempts=3, backoff_initial_seconds=1.0)
    queue = WorkQueue("jobs", QueueConfig(retry=retry), clock=clock, random_source=lambda: 0.5)
    attempts: list[float] = []

    async def flaky() -> str:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise ConnectionError("reset")
        return "ok"

    job = queue.submit_nowait(flaky)
    await clock.advance(10.0)

    assert await job == "ok"
    start = attempts[0]
    assert [t - start for t in attempts] == [0.0, 0.75, 0.75 + 1.5]
    outcomes = queue.stats().outcomes
    assert (outcomes[Outcome.RETRIED], outcomes[Outcome.COMPLETED]) == (2, 1)


async def test_a_retry_that_would_miss_the_deadline_is_not_made() -> None:
    """When the backoff would end past the deadline the job fails with its last exception."""
    clock = FakeClock()
    retry = RetryPolicy((ConnectionError,), max_attempts=5, backoff_initial_seconds=4.0)
    queue = WorkQueue("jobs", QueueConfig(retry=retry), clock=clock, random_source=lambda: 0.0)
    attempts: list[float] = []

    async def down() -> None:
        attempts.append(clock.now())
        raise ConnectionError("refused")

    job = queue.submit_nowait(down, deadline_seconds=6.0)
    await clock.advance(20.0)

    with pytest.raises(ConnectionError, match="refused"):
        await job
    assert len(attempts) == 2  # 0 s, then 4 s; the next would start at 12 s, past the deadline
    assert queue.stats().outcomes[Outcome.RETRIED] == 1


async def test_other_exceptions_are_not_retried() -> None:
    """An exception outside `retry_on` fails the job at once."""
    clock = FakeClock()
    retry = RetryPolicy((ConnectionError,))
    queue = WorkQueue("jobs", QueueConfig(retry=retry), clock=clock)
    calls: list[int] = []

    async def wrong() -> None:
        calls.append(1)
        raise ValueError("bad order")

    with pytest.raises(ValueError, match="bad order"):
        await queue.submit(wrong)
    assert calls == [1]


async def test_pool_grows_with_waiting_jobs_and_shrinks_when_idle() -> None:
    """Workers start while jobs wait and all are busy, up to max; idle ones exit down to min."""
    clock = FakeClock()
    queue = make(clock, capacity=20, min_workers=1, max_workers=3, idle_seconds=5.0)
    jobs = [queue.submit_nowait(takes(clock, 1.0)) for _ in range(6)]
    await settle()
    assert (queue.stats().workers, queue.stats().busy) == (3, 3)

    await clock.advance(2.0)
    await asyncio.gather(*jobs)
    assert queue.stats().workers == 3
    await clock.advance(5.0)

    assert (queue.stats().workers, queue.stats().busy) == (1, 0)


async def test_cancelling_a_submitter_removes_its_queued_job() -> None:
    """A cancelled `submit` takes its job out of the queue: never run, counted cancelled."""
    clock = FakeClock()
    queue = make(clock)
    ran: list[object] = []
    queue.submit_nowait(takes(clock, 5.0))
    waiting = asyncio.create_task(queue.submit(takes(clock, 1.0, "x", ran)))
    await settle()
    assert queue.stats().depth == 1

    waiting.cancel()
    await settle()

    assert waiting.cancelled()
    assert queue.stats().depth == 0
    await clock.advance(10.0)
    assert ran == []
    assert queue.stats().outcomes[Outcome.CANCELLED] == 1


async def test_cancelling_a_submitter_cancels_its_running_job() -> None:
    """A cancelled `submit` whose job runs cancels the job's task."""
    clock = FakeClock()
    queue = make(clock)
    stopped: list[str] = []

    async def long() -> None:
        try:
            await takes(clock, 100.0)()
        finally:
            stopped.append("stopped")

    call = asyncio.create_task(queue.submit(long))
    await settle()
    call.cancel()
    await settle()

    assert call.cancelled()
    assert stopped == ["stopped"]
    assert queue.stats().outcomes[Outcome.CANCELLED] == 1
    assert queue.stats().busy == 0


async def test_a_producer_waiting_for_room_expires_at_its_deadline() -> None:
    """`submit` waiting for capacity gives up at the deadline with ExpiredError."""
    clock = FakeClock()
    queue = make(clock, capacity=1)
    queue.submit_nowait(takes(clock, 100.0))
    await settle()
    queue.submit_nowait(takes(clock, 100.0))
    producer = asyncio.create_task(queue.submit(takes(clock, 1.0), deadline_seconds=3.0))
    await settle()

    await clock.advance(3.0)

    with pytest.raises(ExpiredError):
        await producer
    stats = queue.stats()
    assert (stats.producers_waiting, stats.outcomes[Outcome.EXPIRED]) == (0, 1)


async def test_timing_listeners_get_wait_and_processing() -> None:
    """Each dequeue reports its wait and each attempt its run time."""
    clock = FakeClock()
    queue = make(clock)
    seen: list[tuple[Timing, float]] = []
    queue.add_timing_listener(lambda timing, seconds: seen.append((timing, seconds)))
    queue.submit_nowait(takes(clock, 2.0))
    second = queue.submit_nowait(takes(clock, 3.0))

    await clock.advance(5.0)
    await second

    assert seen == [
        (Timing.WAIT, 0.0),
        (Timing.PROCESSING, 2.0),
        (Timing.WAIT, 2.0),
        (Timing.PROCESSING, 3.0),
    ]


async def test_a_closed_queue_refuses_new_jobs() -> None:
    """After close, submit and submit_nowait raise QueueClosedError, counted rejected."""
    clock = FakeClock()
    queue = make(clock)
    await queue.close()

    with pytest.raises(QueueClosedError, match="queue 'jobs' is closed"):
        await queue.submit(takes(clock, 1.0))
    with pytest.raises(QueueClosedError):
        queue.submit_nowait(takes(clock, 1.0))
    assert queue.stats().outcomes[Outcome.REJECTED] == 2
