"""Closing a queue with real tasks and the real clock: drain, grace, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from agent.queue.config import QueueConfig
from agent.queue.errors import JobCancelledError, QueueClosedError
from agent.queue.job import Outcome
from agent.queue.manager import WorkQueue
from tests.harness.wait import poll_until


def make(**options: object) -> WorkQueue:
    """A queue on the real clock with two workers."""
    settings: dict[str, object] = {"capacity": 10, "min_workers": 1, "max_workers": 2}
    settings.update(options)
    return WorkQueue("drain", QueueConfig(**settings))  # type: ignore[arg-type]


async def test_close_lets_queued_and_running_jobs_finish() -> None:
    """Jobs admitted before close all complete; then the pool is gone."""
    queue = make()
    release = asyncio.Event()
    done: list[int] = []

    def job(i: int):  # type: ignore[no-untyped-def]
        async def run() -> int:
            await release.wait()
            done.append(i)
            return i

        return run

    calls = [asyncio.create_task(queue.submit(job(i))) for i in range(5)]
    await poll_until(lambda: queue.stats().busy == 2, 5, what="two jobs running")
    closing = asyncio.create_task(queue.close(grace_seconds=30))
    await poll_until(lambda: queue.closed, 5)
    assert not closing.done()

    release.set()
    await closing

    assert [c.result() for c in calls] == [0, 1, 2, 3, 4]
    assert sorted(done) == [0, 1, 2, 3, 4]
    stats = queue.stats()
    assert (stats.workers, stats.depth, stats.outcomes[Outcome.COMPLETED]) == (0, 0, 5)


async def test_jobs_left_after_the_grace_are_cancelled() -> None:
    """Past the grace, running and queued jobs are cancelled; submitters get JobCancelledError."""
    queue = make(max_workers=1)
    never = asyncio.Event()
    cleaned: list[str] = []

    async def stuck() -> None:
        try:
            await never.wait()
        finally:
            cleaned.append("cleaned up")

    running = asyncio.create_task(queue.submit(stuck))
    queued = asyncio.create_task(queue.submit(stuck))
    await poll_until(lambda: queue.stats().busy == 1 and queue.stats().depth == 1, 5)

    await queue.close(grace_seconds=0.2)

    for call in (running, queued):
        with pytest.raises(JobCancelledError, match="shut down"):
            await call
    assert cleaned == ["cleaned up"]  # the running one; the queued one never started
    stats = queue.stats()
    assert (stats.workers, stats.busy, stats.outcomes[Outcome.CANCELLED]) == (0, 0, 2)


async def test_close_turns_away_waiting_and_new_producers() -> None:
    """Producers waiting for room and any submit during the drain get QueueClosedError."""
    queue = make(capacity=1, max_workers=1)
    release = asyncio.Event()
    first = queue.submit_nowait(release.wait)
    await poll_until(lambda: queue.stats().busy == 1, 5)
    second = queue.submit_nowait(release.wait)
    blocked = asyncio.create_task(queue.submit(release.wait))
    await poll_until(lambda: queue.stats().producers_waiting == 1, 5)

    closing = asyncio.create_task(queue.close(grace_seconds=30))
    with pytest.raises(QueueClosedError, match="is closed"):
        await blocked
    with pytest.raises(QueueClosedError):
        await queue.submit(release.wait)
    release.set()
    await closing

    assert (await first, await second) == (True, True)
    outcomes = queue.stats().outcomes
    assert (outcomes[Outcome.COMPLETED], outcomes[Outcome.REJECTED]) == (2, 2)


async def test_cancelling_close_cancels_the_jobs_and_propagates() -> None:
    """A cancelled close() cancels what remains at once and re-raises CancelledError."""
    queue = make(max_workers=1)
    never = asyncio.Event()
    job = queue.submit_nowait(never.wait)
    await poll_until(lambda: queue.stats().busy == 1, 5)
    closing = asyncio.create_task(queue.close(grace_seconds=30))
    await poll_until(lambda: queue.closed, 5)

    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing

    with pytest.raises(JobCancelledError):
        await job
    await poll_until(lambda: queue.stats().workers == 0, 5, what="workers gone")


async def test_async_with_drains_on_exit() -> None:
    """Leaving `async with` closes the queue after its jobs finish."""
    async with make(min_workers=2) as queue:
        assert queue.stats().workers == 2
        job = queue.submit_nowait(lambda: asyncio.sleep(0.01, "slept"))

    assert queue.closed
    assert await job == "slept"
    assert queue.stats().workers == 0


async def test_close_refuses_a_bad_grace() -> None:
    """A negative or infinite grace is a clear error."""
    queue = make()
    for grace in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="grace_seconds must be finite and >= 0"):
            await queue.close(grace_seconds=grace)
