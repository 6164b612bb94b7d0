"""The work queue: admission with backpressure, a worker pool that follows the load, deadlines,
retries with backoff, and a graceful drain on close.

It is meant for one event loop: state changes between awaits, so it needs no lock. Nothing on
the submit path touches an OTel instrument: outcomes are plain integers read by `metrics.observe`,
and the wait and processing times are handed to timing listeners from the workers only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import structlog

from agent.queue.backpressure import DrainRate, Watermarks, retry_after_seconds
from agent.queue.clock import Clock, MonotonicClock
from agent.queue.config import QueueConfig, is_finite
from agent.queue.errors import (
    ExpiredError,
    JobCancelledError,
    QueueClosedError,
    RejectedError,
)
from agent.queue.job import Job, Outcome, QueueStats, Timing, TimingListener, attempt
from agent.queue.scheduler import Entry, FairScheduler

log = structlog.get_logger("vigil.queue")

T = TypeVar("T")

# How long close() waits, after cancelling them, for jobs that do not stop at once.
_ABANDON_SECONDS = 1.0


class WorkQueue:
    """A bounded priority queue of coroutine functions run by a pool of workers.

    `await submit(fn, priority=..., deadline_seconds=...)` waits for room (backpressure on the
    producer) and returns what `fn()` returns, or raises what it raised; `submit_nowait(...)`
    returns a `Job` to await, or raises `RejectedError` at once. `fn` takes no arguments (bind
    them with `functools.partial` or a lambda) and is called once per attempt.
    """

    def __init__(
        self,
        name: str,
        config: QueueConfig | None = None,
        *,
        clock: Clock | None = None,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        """A queue called `name` (the `queue` label); `clock` and `random_source` are injected."""
        if not isinstance(name, str) or not name:
            raise ValueError("WorkQueue.name: must be a non-empty string")
        self._name = name
        self._config = config if config is not None else QueueConfig()
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._random = random_source
        self._scheduler: FairScheduler[Job[Any]] = FairScheduler(self._config.priorities)
        high, low = self._config.depth_marks()
        self._watermarks = Watermarks(
            high, low, self._config.wait_high_seconds, self._config.wait_low_seconds
        )
        self._drain = DrainRate(self._config.rate_window_seconds)
        self._waiters: collections.deque[tuple[Job[Any], asyncio.Future[None]]] = (
            collections.deque()
        )
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._busy = 0
        self._admitted = 0
        self._outcomes = dict.fromkeys(Outcome, 0)
        self._closed = False
        self._timing: list[TimingListener] = []
        self._shut_down = f"queue {name!r} shut down: the job was cancelled"

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._name

    @property
    def config(self) -> QueueConfig:
        """The queue's settings."""
        return self._config

    @property
    def closed(self) -> bool:
        """Whether `close()` has been called (no new jobs are admitted)."""
        return self._closed

    @property
    def backpressure_active(self) -> bool:
        """Whether backpressure is on now (re-read against the marks)."""
        return self._refresh()

    def add_timing_listener(self, listener: TimingListener) -> None:
        """Call `listener(timing, seconds)` for each dequeued job's wait and each attempt's run."""
        self._timing.append(listener)

    def stats(self) -> QueueStats:
        """A snapshot of the queue's depth, pool, backpressure and outcome counts."""
        now = self._clock.now()
        oldest = self._scheduler.oldest_pushed_at()
        backpressure = self._refresh()
        depth = len(self._scheduler)
        return QueueStats(
            name=self._name,
            capacity=self._config.capacity,
            depth=depth,
            depth_by_priority={p: self._scheduler.waiting(p) for p in self._config.priorities},
            producers_waiting=len(self._waiters),
            workers=len(self._workers),
            busy=self._busy,
            backpressure=backpressure,
            oldest_wait_seconds=0.0 if oldest is None else now - oldest,
            drain_per_second=self._drain.per_second(now),
            outcomes=dict(self._outcomes),
            closed=self._closed,
            admitted=self._admitted,
            # What `submit_nowait` checks (without counting a refusal).
            refusing=self._closed
            or bool(self._waiters)
            or depth >= self._config.capacity
            or backpressure,
        )

    def retry_after_seconds(self) -> float:
        """Little's law: the jobs waiting (and producers) divided by the measured drain rate."""
        config = self._config
        return retry_after_seconds(
            len(self._scheduler) + len(self._waiters),
            self._drain.per_second(self._clock.now()),
            config.retry_after_min_seconds,
            config.retry_after_max_seconds,
        )

    async def submit(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        priority: str | None = None,
        deadline_seconds: float | None = None,
    ) -> T:
        """Wait for room, then for the job: its result, or what ended it.

        Raises `QueueClosedError` when the queue is closed (also while waiting for room),
        `ExpiredError` when the deadline passes before the job starts, `DeadlineExceededError`
        when it is still running at its deadline, `JobCancelledError` when a drain cancels it,
        and the job's own exception when it fails. Cancelling the caller cancels the job.
        """
        priority, deadline_seconds = self._accept(fn, priority, deadline_seconds)
        job = self._job(fn, priority, deadline_seconds)
        if self._waiters or not self._admissible():
            await self._wait_for_room(job)
        else:
            self._enqueue(job)
        return await job

    def submit_nowait(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        priority: str | None = None,
        deadline_seconds: float | None = None,
    ) -> Job[T]:
        """Enqueue at once and return the job to await, or raise without waiting.

        Raises `RejectedError` (with `retry_after_seconds`) when the queue is full, under
        backpressure, or has producers waiting for room, and `QueueClosedError` when closed.
        Must be called from the event loop's thread.
        """
        priority, deadline_seconds = self._accept(fn, priority, deadline_seconds)
        if self._waiters or not self._admissible():
            self._outcomes[Outcome.REJECTED] += 1
            full = len(self._scheduler) >= self._config.capacity
            reason = "full" if full else "backpressure"
            raise RejectedError(self._name, reason, self.retry_after_seconds())
        job = self._job(fn, priority, deadline_seconds)
        self._enqueue(job)
        return job

    async def close(self, grace_seconds: float | None = None) -> None:
        """Stop admitting, let queued and running jobs finish within the grace, cancel the rest.

        Producers still waiting for room get `QueueClosedError`; jobs still queued or running
        when `grace_seconds` (default `drain_grace_seconds`) run out end as cancelled and their
        submitters get `JobCancelledError`. Calling it again waits for the same drain. If the
        caller is cancelled, every remaining job is cancelled at once and the cancellation
        propagates.
        """
        grace = self._config.drain_grace_seconds if grace_seconds is None else grace_seconds
        if not is_finite(grace, 0, inclusive=True):
            raise ValueError("close: grace_seconds must be finite and >= 0")
        if not self._closed:
            self._closed = True
            while self._waiters:
                job, admitted = self._waiters.popleft()
                if not admitted.done():
                    self._count(job, Outcome.REJECTED)
                    admitted.set_exception(QueueClosedError(self._name))
            for _ in range(len(self._scheduler)):
                self._dispatch()
            self._wake_idle()
        try:
            async with self._clock.timeout_at(self._clock.now() + grace):
                while self._workers:
                    await asyncio.wait(set(self._workers))
        except TimeoutError:
            cancelled = self._abort(f"not finished within the {grace:g}s drain grace")
            log.warning("queue.drain.cancelled", queue=self._name, jobs=cancelled)
            await self._reap()
        except asyncio.CancelledError:
            self._abort("the drain was cancelled")
            raise

    async def __aenter__(self) -> WorkQueue:
        """Start the minimum of workers; the queue closes on exit."""
        for _ in range(self._config.min_workers - len(self._workers)):
            self._spawn()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Drain and close the queue."""
        await self.close()

    # --- admission --------------------------------------------------------------------------

    def _accept(
        self, fn: object, priority: str | None, deadline_seconds: float | None
    ) -> tuple[str, float]:
        """Check a submission (a clear error for bad input) and that the queue is open."""
        checked = self._config.submission(self._name, fn, priority, deadline_seconds)
        if self._closed:
            self._outcomes[Outcome.REJECTED] += 1
            raise QueueClosedError(self._name)
        return checked

    def _job(self, fn: Callable[[], Awaitable[T]], priority: str, seconds: float) -> Job[T]:
        """A new job whose future, once cancelled by its submitter, cancels the job."""
        now = self._clock.now()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        job = Job(fn, priority, now, now + seconds, future)
        future.add_done_callback(lambda _: self._on_future_done(job))
        return job

    def _admissible(self) -> bool:
        """Whether a new job may enter now: open, below capacity, no backpressure."""
        if self._closed or len(self._scheduler) >= self._config.capacity:
            return False
        return not self._refresh()

    async def _wait_for_room(self, job: Job[Any]) -> None:
        """Wait, in arrival order, until `job` is admitted; its deadline bounds the wait."""
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (job, admitted)
        self._waiters.append(waiter)
        try:
            async with self._clock.timeout_at(job.deadline):
                await admitted
        except TimeoutError:
            # The timeout cancels `admitted`: only a result or an exception means it was settled.
            if admitted.cancelled():
                _discard(self._waiters, waiter)
                self._count(job, Outcome.EXPIRED)
                waited = self._clock.now() - job.submitted_at
                raise ExpiredError(self._name, waited) from None
            # Admitted as the deadline passed: the worker that dequeues it expires it.
        except asyncio.CancelledError:
            if not admitted.done() or admitted.cancelled():
                _discard(self._waiters, waiter)
                self._count(job, Outcome.CANCELLED)
            elif admitted.exception() is None:
                job.cancel()
            raise
        admitted.result()  # QueueClosedError when close() turned it away

    def _enqueue(self, job: Job[Any]) -> None:
        """Put an admitted job in its class and make sure a worker will take it."""
        job.entry = self._scheduler.push(job.priority, job, self._clock.now())
        self._admitted += 1
        self._refresh()
        self._dispatch()

    def _left(self) -> None:
        """A job left the queue: re-read the marks and admit waiting producers in order."""
        self._refresh()
        while self._waiters and self._admissible():
            job, admitted = self._waiters.popleft()
            if not admitted.done():
                self._enqueue(job)
                admitted.set_result(None)

    def _refresh(self) -> bool:
        """Feed the current depth and oldest wait to the watermarks; whether backpressure is on."""
        oldest = self._scheduler.oldest_pushed_at()
        wait = 0.0 if oldest is None else self._clock.now() - oldest
        return self._watermarks.update(len(self._scheduler), wait)

    def _on_future_done(self, job: Job[Any]) -> None:
        """The job's future is done; if its submitter cancelled it, take it out or stop it."""
        if not job.future.cancelled() or job.outcome is not None:
            return
        if job.entry is not None and self._scheduler.remove(job.entry):
            job.entry = None
            self._count(job, Outcome.CANCELLED)
            self._left()
        elif job.task is not None:
            job.task.cancel()
        # Otherwise a worker holds it between attempts and sees the cancellation next.

    def _count(self, job: Job[Any], outcome: Outcome) -> bool:
        """Record `job`'s final outcome once; False if it already had one."""
        if job.outcome is not None:
            return False
        job.outcome = outcome
        self._outcomes[outcome] += 1
        return True

    def _finish(
        self, job: Job[T], outcome: Outcome, result: Any = None, error: BaseException | None = None
    ) -> None:
        """Record the final outcome and hand the result or error to the submitter."""
        if self._count(job, outcome) and not job.future.done():
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    # --- workers ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Wake an idle worker for a new job, or start one if all are busy and there is room."""
        if not self._wake_idle(every=False) and len(self._workers) < self._config.max_workers:
            self._spawn()
        while len(self._workers) < self._config.min_workers:
            self._spawn()

    def _wake_idle(self, every: bool = True) -> bool:
        """Wake one idle worker, or all of them (on close, so that they exit); whether any woke."""
        woke = False
        while self._idle and (every or not woke):
            wake = self._idle.popleft()
            if not wake.done():
                wake.set_result(None)
                woke = True
        return woke

    def _spawn(self) -> None:
        """Start one worker."""
        task = asyncio.get_running_loop().create_task(self._work(), name=f"queue:{self._name}")
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        """Take jobs until closed and empty, or idle too long while above the minimum."""
        while True:
            entry = self._scheduler.pop()
            if entry is None:
                if self._closed or not await self._rest():
                    return
                continue
            self._busy += 1
            try:
                await self._serve(entry)
            finally:
                self._busy -= 1

    async def _rest(self) -> bool:
        """Wait for work; False when this worker should exit (idle past `idle_seconds`)."""
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle.append(wake)
        try:
            async with self._clock.timeout_at(self._clock.now() + self._config.idle_seconds):
                await wake
        except TimeoutError:
            if wake.cancelled():  # by the timeout, not woken
                _discard(self._idle, wake)
                if len(self._workers) > self._config.min_workers:
                    # Leave the pool now, so that workers idling out together stop at the minimum.
                    self._workers.discard(asyncio.current_task())
                    return False
        return True

    async def _serve(self, entry: Entry[Job[Any]]) -> None:
        """Run one dequeued job unless it was cancelled or its deadline has passed."""
        job = entry.item
        job.entry = None
        now = self._clock.now()
        waited = now - entry.pushed_at
        self._drain.record(now)
        self._left()
        self._emit(Timing.WAIT, waited)
        if job.future.done():
            self._count(job, Outcome.CANCELLED)
        elif now >= job.deadline:
            expired = ExpiredError(self._name, now - job.submitted_at)
            self._finish(job, Outcome.EXPIRED, error=expired)
        else:
            await self._run(job)

    async def _run(self, job: Job[Any]) -> None:
        """Attempt the job until it succeeds, fails for good, or runs out of deadline."""
        policy = self._config.retry
        while True:
            task = await self._attempt_once(job)
            if task.cancelled():
                cancelled = JobCancelledError(f"queue {self._name!r}: the job was cancelled")
                self._finish(job, Outcome.CANCELLED, error=cancelled)
                return
            error = task.exception()
            if error is None:
                self._finish(job, Outcome.COMPLETED, result=task.result())
                return
            if policy is None or not policy.retries(error, job.attempts):
                self._finish(job, Outcome.FAILED, error=error)
                return
            delay = policy.delay(job.attempts, self._random())
            if self._clock.now() + delay >= job.deadline:
                self._finish(job, Outcome.FAILED, error=error)
                return
            self._outcomes[Outcome.RETRIED] += 1
            try:
                await self._clock.sleep(delay)
            except asyncio.CancelledError:
                self._finish(job, Outcome.CANCELLED, error=JobCancelledError(self._shut_down))
                raise
            if job.future.done():  # its submitter cancelled it during the backoff
                self._count(job, Outcome.CANCELLED)
                return

    async def _attempt_once(self, job: Job[Any]) -> asyncio.Task[Any]:
        """Run one attempt in its own task (so that only the job is cancelled); the ended task."""
        job.attempts += 1
        loop = asyncio.get_running_loop()
        task = loop.create_task(attempt(job, self._clock, self._name))
        # Woken by the task's end whether it returned, raised or was cancelled (cheaper than
        # asyncio.wait); only the worker's own cancellation raises here.
        ended: asyncio.Future[None] = loop.create_future()
        self._tasks.add(task)
        task.add_done_callback(lambda t: _ended(t, self._tasks, ended))
        job.task = task
        started = self._clock.now()
        try:
            await ended
        except asyncio.CancelledError:
            # The worker itself is cancelled (a drain out of grace): the job goes with it.
            if task.done() and not task.cancelled():
                task.exception()  # ended just now; the drain's verdict stands
            else:
                task.cancel()
            self._finish(job, Outcome.CANCELLED, error=JobCancelledError(self._shut_down))
            raise
        finally:
            job.task = None
            self._emit(Timing.PROCESSING, self._clock.now() - started)
        return task

    def _emit(self, timing: Timing, seconds: float) -> None:
        """Hand a duration to the timing listeners; a listener's bug never reaches the job."""
        for listener in self._timing:
            try:
                listener(timing, seconds)
            except Exception:
                log.exception("queue.timing_listener.failed", queue=self._name)

    def _abort(self, why: str) -> int:
        """Cancel every queued and running job; how many there were."""
        message = f"queue {self._name!r} shut down: {why}; the job was cancelled"
        taken = self._scheduler.drain()
        for entry in taken:
            entry.item.entry = None
            self._finish(entry.item, Outcome.CANCELLED, error=JobCancelledError(message))
        running = self._busy
        for worker in self._workers:
            worker.cancel()
        self._wake_idle()
        return len(taken) + running

    async def _reap(self) -> None:
        """Wait for the cancelled workers, and briefly for their jobs; log jobs left behind."""
        if self._workers:
            await asyncio.wait(set(self._workers))
        if not self._tasks:
            return
        with_deadline = self._clock.timeout_at(self._clock.now() + _ABANDON_SECONDS)
        try:
            async with with_deadline:
                await asyncio.wait(set(self._tasks))
        except TimeoutError:
            log.warning("queue.jobs.abandoned", queue=self._name, jobs=len(self._tasks))


def _discard(waiting: collections.deque[Any], item: object) -> None:
    """Remove `item` if it is still there: a waker may already have skipped past it."""
    with contextlib.suppress(ValueError):
        waiting.remove(item)


def _ended(
    task: asyncio.Task[Any], tasks: set[asyncio.Task[Any]], ended: asyncio.Future[None]
) -> None:
    """An attempt's task is done: forget it and wake the worker waiting on `ended`."""
    tasks.discard(task)
    if not ended.done():
        ended.set_result(None)
