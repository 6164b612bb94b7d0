"""The queue's `admitted` count and `refusing` flag, read by the runtime API."""

from __future__ import annotations

import asyncio

import pytest

from agent.queue.config import QueueConfig
from agent.queue.errors import RejectedError
from agent.queue.manager import WorkQueue
from tests.unit.queue.clock import FakeClock, settle


async def test_admitted_counts_entries_and_refusing_follows_capacity() -> None:
    """Two jobs admitted into a queue of two; it refuses then, the third is refused and not
    counted as admitted; once drained it accepts again."""
    clock = FakeClock()
    queue = WorkQueue("q", QueueConfig(capacity=2, min_workers=0, max_workers=1), clock=clock)
    gate = asyncio.Event()

    async def wait() -> None:
        await gate.wait()

    running = queue.submit_nowait(wait)
    await settle()
    queued = queue.submit_nowait(wait)
    other = queue.submit_nowait(wait)
    stats = queue.stats()
    assert (stats.admitted, stats.depth, stats.busy, stats.refusing) == (3, 2, 1, True)

    with pytest.raises(RejectedError):
        queue.submit_nowait(wait)
    assert queue.stats().admitted == 3

    gate.set()
    await asyncio.gather(running, queued, other)
    stats = queue.stats()
    assert (stats.admitted, stats.depth, stats.refusing) == (3, 0, False)
    await queue.close()
    assert queue.stats().refusing is True  # closed
