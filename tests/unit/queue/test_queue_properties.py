"""Properties of the work queue under random scripts of submits, cancels and time (fake clock)."""

from __future__ import annotations

import asyncio
import collections
import random
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from agent.queue.config import QueueConfig, RetryPolicy
from agent.queue.errors import (
    DeadlineExceededError,
    ExpiredError,
    JobCancelledError,
    QueueClosedError,
    RejectedError,
)
from agent.queue.job import FINAL_OUTCOMES, Job, Outcome
from agent.queue.manager import WorkQueue
from tests.unit.queue.clock import FakeClock, settle

PRIORITIES = ("high", "normal", "low")

submit_op = st.tuples(
    st.just("submit"),
    st.sampled_from(PRIORITIES),
    st.floats(0.5, 12),  # deadline
    st.sampled_from([0.0, 0.5, 1.0, 3.0, 8.0]),  # duration
    st.sampled_from(["ok", "retryable", "fatal"]),
    st.booleans(),  # nowait
)
advance_op = st.tuples(st.just("advance"), st.sampled_from([0.0, 0.25, 1.0, 2.5, 6.0]))
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 50))
scripts = st.lists(st.one_of(submit_op, submit_op, advance_op, cancel_op), min_size=8, max_size=40)

configs = st.builds(
    lambda capacity, workers, high, with_retry, wait_marks: QueueConfig(
        capacity=capacity,
        min_workers=min(workers),
        max_workers=max(workers),
        idle_seconds=2.0,
        depth_high=max(1, min(high, capacity)),
        depth_low=max(1, min(high, capacity)) // 2,
        wait_high_seconds=wait_marks[0] if wait_marks else None,
        wait_low_seconds=wait_marks[1] if wait_marks else None,
        retry=RetryPolicy((ConnectionError,), max_attempts=3, backoff_initial_seconds=0.5)
        if with_retry
        else None,
    ),
    st.integers(1, 6),
    st.tuples(st.integers(0, 3), st.integers(1, 3)),
    st.integers(1, 6),
    st.booleans(),
    st.one_of(st.none(), st.just((4.0, 1.0))),
)


def _outcome_of(error: BaseException | None) -> Outcome:
    """The final outcome a submitter's result or exception stands for."""
    if error is None:
        return Outcome.COMPLETED
    if isinstance(error, ExpiredError):
        return Outcome.EXPIRED
    if isinstance(error, RejectedError | QueueClosedError):
        return Outcome.REJECTED
    if isinstance(error, JobCancelledError | asyncio.CancelledError):
        return Outcome.CANCELLED
    assert isinstance(error, DeadlineExceededError | ConnectionError | ValueError), error
    return Outcome.FAILED


async def _scenario(config: QueueConfig, script: list[tuple[Any, ...]], grace: float) -> None:
    """Run `script` against a queue and check the invariants during and after it."""
    clock = FakeClock()
    queue = WorkQueue("prop", config, clock=clock, random_source=random.Random(3).random)
    runs: collections.Counter[int] = collections.Counter()
    handles: list[asyncio.Task[Any] | Job[Any] | BaseException] = []
    submitted = 0

    def check() -> None:
        stats = queue.stats()
        assert stats.depth <= config.capacity
        assert stats.workers <= config.max_workers
        assert stats.busy <= stats.workers

    def job(ident: int, duration: float, kind: str, deadline: float) -> Any:
        async def run() -> int:
            check()
            assert clock.now() < deadline, "a job started at or after its deadline"
            runs[ident] += 1
            await clock.sleep(duration)
            if kind == "retryable":
                raise ConnectionError("down")
            if kind == "fatal":
                raise ValueError("bad")
            return ident

        return run

    for op in script:
        if op[0] == "submit":
            _, priority, deadline, duration, kind, nowait = op
            fn = job(submitted, duration, kind, clock.now() + deadline)
            submitted += 1
            if nowait:
                try:
                    handles.append(
                        queue.submit_nowait(fn, priority=priority, deadline_seconds=deadline)
                    )
                except (RejectedError, QueueClosedError) as error:
                    handles.append(error)
            else:
                call = queue.submit(fn, priority=priority, deadline_seconds=deadline)
                handles.append(asyncio.create_task(call))
        elif op[0] == "advance":
            await clock.advance(op[1])
        elif handles:
            target = handles[op[1] % len(handles)]
            if not isinstance(target, BaseException):
                target.cancel()
        await settle()
        check()

    closer = asyncio.create_task(queue.close(grace))
    for _ in range(200):
        if closer.done():
            break
        await clock.advance(1.0)
    await closer

    seen: collections.Counter[Outcome] = collections.Counter()
    expired: list[int] = []
    for ident, handle in enumerate(handles):
        if isinstance(handle, BaseException):
            outcome = _outcome_of(handle)
        elif isinstance(handle, Job):
            assert handle.done(), ident
            assert handle.outcome is not None, ident
            if handle.future.cancelled():
                continue  # the job may have ended another way before the cancel landed
            outcome = _outcome_of(handle.future.exception())
            assert handle.outcome is outcome, (ident, handle.outcome, outcome)
        else:
            assert handle.done(), ident
            if handle.cancelled():
                continue
            outcome = _outcome_of(handle.exception())
        seen[outcome] += 1
        if outcome is Outcome.EXPIRED:
            expired.append(ident)
        assert runs[ident] <= (config.retry.max_attempts if config.retry else 1)

    counted = queue.stats().outcomes
    for outcome in Outcome:
        event(f"{outcome}: {'some' if counted[outcome] else 'none'}")
    assert sum(counted[o] for o in FINAL_OUTCOMES) == submitted
    for outcome in FINAL_OUTCOMES:
        assert seen[outcome] <= counted[outcome], outcome
    assert all(runs[ident] == 0 for ident in expired)
    stats = queue.stats()
    assert (stats.depth, stats.workers, stats.busy, stats.producers_waiting) == (0, 0, 0, 0)


@settings(max_examples=200, deadline=None)
@given(configs, scripts, st.sampled_from([0.0, 2.0, 30.0]))
def test_queue_invariants_hold_for_any_script(
    config: QueueConfig, script: list[tuple[Any, ...]], grace: float
) -> None:
    """Capacity holds, expired jobs never run, and every job ends in exactly one outcome."""
    asyncio.run(_scenario(config, script, grace))
