"""A fake monotonic clock for the queue: sleeps and deadlines fire only when a test moves it."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Callable

# Event-loop turns given to woken tasks after each timer fires: enough for a worker to finish a
# job and hand its result to the submitter, with room to spare.
SETTLE_TURNS = 50


async def settle(turns: int = SETTLE_TURNS) -> None:
    """Let every ready task run until the loop is quiet (no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


class FakeClock:
    """Implements `agent.queue.clock.Clock` on a time line that moves only in `advance`."""

    def __init__(self, now: float = 1000.0) -> None:
        """Start at `now` seconds."""
        self._now = now
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._dropped: set[int] = set()

    def now(self) -> float:
        """The current fake time."""
        return self._now

    def _at(self, when: float, callback: Callable[[], None]) -> int:
        """Run `callback` once the clock reaches `when`; a handle for `_drop`."""
        handle = next(self._seq)
        heapq.heappush(self._timers, (when, handle, callback))
        return handle

    def _drop(self, handle: int) -> None:
        """Forget a timer that is no longer needed."""
        self._dropped.add(handle)

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved `seconds` forward."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handle = self._at(self._now + seconds, lambda: woken.done() or woken.set_result(None))
        try:
            await woken
        finally:
            self._drop(handle)

    @contextlib.asynccontextmanager
    async def timeout_at(self, when: float) -> AsyncIterator[asyncio.Timeout]:
        """`asyncio.timeout` that fires when the fake clock reaches `when`."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(None) as timer:

            def fire() -> None:
                if not timer.expired():
                    timer.reschedule(loop.time())

            if when <= self._now:
                fire()
                handle = None
            else:
                handle = self._at(when, fire)
            try:
                yield timer
            finally:
                if handle is not None:
                    self._drop(handle)

    async def advance(self, seconds: float) -> None:
        """Move forward by `seconds`, firing due timers in order and letting their tasks run."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        target = self._now + seconds
        await settle()  # what was started before the clock moves runs at the current time
        while self._timers and self._timers[0][0] <= target:
            when, handle, callback = heapq.heappop(self._timers)
            if handle in self._dropped:
                self._dropped.discard(handle)
                continue
            self._now = max(self._now, when)
            callback()
            await settle()
        self._now = target
        await settle()

    def pending(self) -> int:
        """Timers still waiting to fire."""
        return sum(1 for _, handle, _ in self._timers if handle not in self._dropped)
