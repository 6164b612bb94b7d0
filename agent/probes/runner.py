"""Runs checks: deadlines, the catch-all boundary, concurrency cap, scheduling, metrics and spans.

Probes only describe what they see; everything that must hold for every check lives here once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import structlog

from agent.config import CheckConfig
from agent.probes.board import Scoreboard
from agent.probes.context import ProbeContext
from agent.probes.recorder import CheckRecorder
from agent.probes.result import CheckResult, Reason, Status
from agent.telemetry.redact import redactor
from agent.telemetry.spans import mark_error

Probe = Callable[[Any, ProbeContext], Coroutine[Any, Any, CheckResult]]
log = structlog.get_logger("vigil.runner")

# How long a timed-out probe may take to unwind after cancellation (closing sockets, ending its
# client span) before the runner stops waiting for it and reports the run abandoned.
_UNWIND_SECONDS = 0.5


class Runner:
    """Owns every check run; a check that hangs, raises or returns garbage affects only itself."""

    def __init__(
        self,
        board: Scoreboard,
        probes: Mapping[str, Probe],
        context: ProbeContext,
        recorder: CheckRecorder,
        max_concurrency: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._board = board
        # Look the configured kinds up now: a probe's module, and the driver it imports, loads
        # at start-up rather than inside its first run's deadline (see `agent.probes.ProbeMap`).
        self._probes = {c.kind: probes[c.kind] for c in board.checks.values()}
        self._ctx = context
        self._recorder = recorder
        self._slots = asyncio.Semaphore(max_concurrency)
        self._clock = clock
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._stragglers: set[asyncio.Task[Any]] = set()

    async def run(self, check: CheckConfig) -> CheckResult:
        """Run `check` (one the board holds) under its deadline; record and return the result."""
        async with self._slots:
            return await self._run_recorded(check)

    async def run_round(self, names: Iterable[str] | None = None) -> list[CheckResult]:
        """Run the named checks (default: all) once, concurrently."""
        wanted = list(self._board.checks) if names is None else list(names)
        checks = [self._board.checks[n] for n in wanted]
        return list(await asyncio.gather(*(self.run(c) for c in checks)))

    def start(self) -> None:
        """Start one scheduling loop per check."""
        for check in self._board.checks.values():
            self._loops.append(asyncio.create_task(self._loop(check), name=f"check:{check.name}"))

    async def stop(self, grace_seconds: float) -> None:
        """Stop scheduling; let in-flight runs finish within `grace_seconds`, then cancel them."""
        self._stopping.set()
        if self._loops:
            _, pending = await asyncio.wait(self._loops, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._loops.clear()

    async def _loop(self, check: CheckConfig) -> None:
        loop = asyncio.get_running_loop()
        # Spread first runs so a hundred checks with one interval do not fire in one burst.
        first = random.uniform(0, min(1.0, check.interval_seconds / 10))
        if await self._wait_stop(first):
            return
        due = loop.time()
        while not self._stopping.is_set():
            await self.run(check)
            due += check.interval_seconds
            now = loop.time()
            if due < now:  # overran: skip the missed slots rather than run back to back
                due = now
            if await self._wait_stop(due - now):
                return

    async def _wait_stop(self, seconds: float) -> bool:
        """Sleep `seconds` unless stopping; True when the agent is stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return False
        return True

    async def _run_recorded(self, check: CheckConfig) -> CheckResult:
        self._recorder.started()
        started = time.perf_counter()
        with self._ctx.tracer.start_as_current_span(
            f"check {check.kind}",
            attributes={"vigil.check.name": check.name, "vigil.check.kind": check.kind},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                found = await self._invoke(check)
            finally:
                duration = time.perf_counter() - started
            result = CheckResult(
                found.status,
                found.reason,
                redactor.text(found.message),
                redactor.value(found.details),
                duration,
                self._clock(),
            )
            span.set_attribute("vigil.check.status", result.status.value)
            if result.status in (Status.UNHEALTHY, Status.UNKNOWN):
                mark_error(span, (result.reason or Reason.INTERNAL_ERROR).value, result.message)
            elif result.reason is not None:
                span.set_attribute("vigil.check.reason", result.reason.value)
            previous = self._board.record(check.name, result)
            self._recorder.finished(check.name, result)
            if previous is not None:
                span.add_event(
                    "vigil.check.status_change",
                    {"from": previous.value, "to": result.status.value},
                )
                log.info(
                    "check status changed",
                    check=check.name,
                    kind=check.kind,
                    previous=previous.value,
                    status=result.status.value,
                    reason=result.reason.value if result.reason else None,
                    detail=result.message,
                )
        return result

    async def _invoke(self, check: CheckConfig) -> CheckResult:
        """The probe call in its own task, so the deadline holds even if the probe misbehaves."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._probes[check.kind](check, self._ctx))
        # A future woken by whichever comes first, the probe's end or its deadline: cheaper per
        # run than asyncio.wait, and the deadline holds whatever the probe does with cancellation.
        woken: asyncio.Future[None] = loop.create_future()

        def wake(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        task.add_done_callback(wake)
        timer = loop.call_later(check.timeout_seconds, wake)
        try:
            await woken
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            timer.cancel()
        if not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=_UNWIND_SECONDS)
            if not done:
                self._recorder.abandoned(check.name)
                self._stragglers.add(task)
                task.add_done_callback(self._forget_straggler)
                log.warning("check ignored cancellation; abandoned", check=check.name)
            return CheckResult.unhealthy(
                Reason.TIMEOUT, f"no result within the {check.timeout_seconds:g}s deadline"
            )
        if task.cancelled():
            return CheckResult.unhealthy(Reason.TIMEOUT, "the probe was cancelled")
        exc = task.exception()
        if exc is not None:
            log.error(
                "check raised; probes must return a result",
                check=check.name,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            return CheckResult.unknown(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        return _validated(task.result())

    def _forget_straggler(self, task: asyncio.Task[Any]) -> None:
        self._stragglers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("abandoned check run ended with an error", task=task.get_name())


def _validated(value: object) -> CheckResult:
    """`value` if it is a well-formed result, else an unknown result saying what came back."""
    if not isinstance(value, CheckResult):
        return CheckResult.unknown(
            Reason.INVALID_RESULT, f"probe returned {type(value).__name__}, not a CheckResult"
        )
    if not isinstance(value.status, Status) or not isinstance(value.details, Mapping):
        return CheckResult.unknown(Reason.INVALID_RESULT, "probe returned a malformed CheckResult")
    if value.reason is not None and not isinstance(value.reason, Reason):
        return CheckResult.unknown(Reason.INVALID_RESULT, "probe returned an unknown reason")
    if value.status is not Status.HEALTHY and value.reason is None:
        return dataclasses.replace(value, reason=Reason.ASSERTION_FAILED)
    return value
