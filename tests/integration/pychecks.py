"""Service checks for `kind: python` tests: well-behaved, hanging, raising and lying ones."""

from __future__ import annotations

import asyncio

from agent.probes.result import CheckResult, Reason

calls: dict[str, int] = {}


async def ok(service: str = "orders") -> CheckResult:
    """A healthy internal check that reports what it was given."""
    calls[service] = calls.get(service, 0) + 1
    return CheckResult.healthy(service=service, queue_depth=3)


async def degraded() -> CheckResult:
    """A check that always reports saturation."""
    return CheckResult.degraded(Reason.SATURATION, "queue 95% full", queue_depth=950)


async def hangs() -> CheckResult:
    """Never returns: the runner's deadline must cut it off."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def ignores_cancellation() -> CheckResult:
    """Swallows cancellation and keeps going for a while: the runner must abandon it."""
    # 1.5 s outlasts every timeout + unwind (0.5 s) the tests give it, without holding teardown.
    for _ in range(15):
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            continue
    return CheckResult.healthy()


async def raises() -> CheckResult:
    """A bug: raises instead of returning a result."""
    raise RuntimeError("boom in the check")


async def garbage() -> object:
    """Returns something that is not a result."""
    return {"status": "fine"}


def not_async() -> CheckResult:
    """A plain function where a coroutine function is required."""
    return CheckResult.healthy()
