"""The monotonic clock the queue and throttle measure and wait on, injected so tests move time."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds, a sleep, and a deadline on the same time line.

    `timeout_at(when)` bounds the block to the clock time `when` and, like `asyncio.timeout`,
    raises `TimeoutError` out of it once `when` passes; the `asyncio.Timeout` it yields says
    whether it fired (`expired()`), which tells a deadline apart from a `TimeoutError` the block
    raised itself. A fake clock implements all three on its own time line.
    """

    def now(self) -> float:
        """The current monotonic time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock."""
        ...

    def timeout_at(self, when: float) -> AbstractAsyncContextManager[asyncio.Timeout]:
        """An async context that cancels its block at clock time `when` (`TimeoutError`)."""
        ...


class MonotonicClock:
    """The production clock: `time.monotonic`, `asyncio.sleep` and `asyncio.timeout`."""

    def now(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep(seconds)`."""
        await asyncio.sleep(seconds)

    def timeout_at(self, when: float) -> AbstractAsyncContextManager[asyncio.Timeout]:
        """`asyncio.timeout` for the seconds left until `when` (a past `when` fires at once)."""
        return asyncio.timeout(max(0.0, when - time.monotonic()))
