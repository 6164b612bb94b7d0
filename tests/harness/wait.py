"""Waiting in tests without fixed sleeps: a fake clock a test moves, and one way to poll.

A test that waits for a hold, an expiry or a grace moves a `FakeClock` past it (the agent takes
the clock as `Agent(config, clock=...)`); a test that waits for something the event loop does
(a check run, a poll of another service) polls an observable condition with `poll_until`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")

# Long enough not to busy-spin on a shared machine, short enough not to add up across polls.
INTERVAL = 0.05


class FakeClock:
    """A clock for `clock=` parameters: starts at the wall time and moves only when told."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds`; the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.now += seconds
        return self.now


Describe = str | Callable[[], str]


class MicroClock:
    """A rate limiter's fake clock: moved in whole microseconds (`now`), read in nanoseconds as
    the memory storage reads `time.monotonic_ns`."""

    def __init__(self, now: int = 1_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now * 1000


async def poll_until(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float,  # noqa: ASYNC109 - bounds a series of calls, which asyncio.timeout cannot
    interval: float = INTERVAL,
    what: Describe = "",
) -> T:
    """Call `condition` (plain or async) every `interval` until it returns something truthy.

    Returns that value. After `timeout` seconds it fails with an AssertionError naming `what`
    (a text, or a function giving one at that moment) and the last value.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value: object = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return cast(T, value)
        if loop.time() >= deadline:
            raise AssertionError(_timed_out(condition, timeout, what, value))
        await asyncio.sleep(interval)


def poll_until_sync(
    condition: Callable[[], T], timeout: float, interval: float = INTERVAL, what: Describe = ""
) -> T:
    """`poll_until` for code outside the event loop (threads, child processes); blocks."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(condition, timeout, what, value))
        time.sleep(interval)


def _timed_out(
    condition: Callable[[], object], timeout: float, what: Describe, last: object
) -> str:
    described = what() if callable(what) else what
    name = described or getattr(condition, "__qualname__", repr(condition))
    return f"not true within {timeout:g}s: {name} (last value: {last!r})"
