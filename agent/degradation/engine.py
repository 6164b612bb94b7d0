"""The degradation engine: the imperative shell around the pure core (`state.py`).

It alone holds state (alert book, level, pin, flags switched off), applies webhooks, pins and
clock ticks through `advance` (pure), persists every change before acknowledging it, and writes
the audit trail. One lock serialises changes; the store's compare-and-set on `version` keeps
several engines sharing one store consistent.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from agent.config.model import DegradationSettings
from agent.degradation.alerts import WebhookAlert, WebhookPayload
from agent.degradation.audit import Actor, AuditPage, AuditQuery, time_now_text, utc
from agent.degradation.audit import entry as audit_entry
from agent.degradation.errors import (
    ConflictError,
    RequestError,
    StateError,
    StoreUnavailableError,
)
from agent.degradation.levels import Level
from agent.degradation.policy import Pin
from agent.degradation.state import KEEP_PIN, Policy, State, Step, advance
from agent.degradation.store import StateStore

log = structlog.get_logger("vigil.degradation")
audit_log = structlog.get_logger("vigil.audit")
# How long a write keeps trying while other agents keep storing newer versions first. Every
# conflict means another writer made progress, so a time bound (not a count) fits: under heavy
# load five straight losses happened in tests, and the webhook then answered 503 for no fault.
CONFLICT_SECONDS = 5.0


Listener = Callable[[State, State], None]


@dataclasses.dataclass(slots=True)
class _Request:
    """One change waiting for the next commit."""

    actor: Actor
    trace_id: str | None
    payload: WebhookPayload | None
    pin: Pin | object | None
    note: str
    future: asyncio.Future[Step]
    context: contextvars.Context
    failed: bool = False  # refused alone by `_commit`; left out of every retry


class DegradationEngine:
    """Holds the degradation state of this agent (or of several, through a shared store)."""

    def __init__(
        self,
        settings: DegradationSettings,
        store: StateStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = Policy.from_settings(settings)
        self._settings = settings
        self._store = store
        self._clock = clock
        self._state = State()
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self._queue: list[_Request] = []
        self._flusher: asyncio.Task[None] | None = None
        self.transitions: Counter[tuple[str, str, str]] = Counter()
        self.suppressions: Counter[str] = Counter()
        self.alert_changes: Counter[str] = Counter()
        self.stale_since: float | None = None
        # A shared store can be changed by other agents: poll it on every tick.
        self._shared = store.shared

    @property
    def state(self) -> State:
        """The current state (as last stored)."""
        return self._state

    @property
    def level(self) -> Level:
        """The effective level."""
        return self._state.level

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(old, new)` after every stored change."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Load the stored state and start the clock tick (recovery, expiries)."""
        stored = await self._store.load()
        if stored is not None:
            try:
                self._state = State.from_json(stored)
            except (KeyError, TypeError, ValueError) as exc:
                raise StateError(f"stored degradation state is not usable: {exc!r}") from None
        await self._store.listen(self.sync)  # a shared store announces other agents' changes
        self._ticker = asyncio.create_task(self._tick_forever(), name="degradation-tick")
        log.info(
            "degradation engine started",
            degradation_level=self.level.label,
            version=self._state.version,
            alerts=len(self._state.book.active),
        )

    async def stop(self) -> None:
        """Stop ticking."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        if self._flusher is not None:  # let a commit in flight finish
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._store.close()

    async def receive(self, payload: WebhookPayload, actor: Actor, trace_id: str | None) -> Step:
        """Apply an Alertmanager notification; returns once the result is stored."""
        step = await self._change(actor, trace_id, payload=payload)
        for change in step.changes:
            self.alert_changes[change.value] += 1
        return step

    async def set_pin(
        self,
        level: Level,
        actor: Actor,
        reason: str,
        ttl_seconds: float | None,
        trace_id: str | None,
    ) -> Step:
        """Pin the level until `ttl_seconds` from now (None: until unpinned)."""
        now = self._clock()
        expires = None if ttl_seconds is None else now + ttl_seconds
        pin = Pin(level, actor.id or actor.kind, reason, now, expires)
        return await self._change(actor, trace_id, pin=pin)

    async def clear_pin(self, actor: Actor, reason: str, trace_id: str | None) -> Step:
        """Remove the pin; the alert-demanded level applies at once."""
        return await self._change(actor, trace_id, pin=None, note=reason)

    async def sync(self) -> bool:
        """Adopt a newer state another writer stored; True when one was adopted.

        Stores shared by several agents announce changes, but announcements get lost, so
        every agent also calls this on each tick: polling is the truth, the announcement a hint.
        A store that cannot be read marks the state stale (the last level stays in force).
        """
        try:
            stored = await self._store.load()
        except StoreUnavailableError as exc:
            if self.stale_since is None:
                self.stale_since = self._clock()
                log.warning(
                    "degradation state store unreachable; keeping the last level", error=str(exc)
                )
            return False
        if self.stale_since is not None:
            log.info(
                "degradation state store reachable again",
                stale_seconds=round(self._clock() - self.stale_since, 3),
            )
            self.stale_since = None
        if stored is None or int(stored["version"]) <= self._state.version:
            return False
        async with self._lock:
            newer = State.from_json(stored)
            if newer.version <= self._state.version:
                return False
            old, self._state = self._state, newer
        if old.level != newer.level:
            log.warning(
                "degradation level changed by another agent",
                previous_level=old.level.label,
                degradation_level=newer.level.label,
                version=newer.version,
            )
        for listener in self._listeners:
            try:
                listener(old, newer)
            except Exception:
                log.exception("degradation listener failed")
        return True

    async def history(self, query: AuditQuery) -> AuditPage:
        """The audit entries `query` selects, newest first, a page at a time."""
        return await self._store.history(query)

    async def record(self, action: str, body: Mapping[str, Any], actor: Actor) -> None:
        """Append an audit entry for a change made outside the level state (flag writes).

        The entry rides on a commit of the same state under the next version: every stored
        change has a version of its own (a store may keep one commit per version, as the file
        journal does when a refused write is retried). A shared store refuses it when another
        agent stored a newer version first: adopt that version and append again.
        """
        deadline = asyncio.get_running_loop().time() + CONFLICT_SECONDS
        attempt = 0
        while True:
            async with self._lock:
                base = self._state
                state = dataclasses.replace(base, version=base.version + 1)
                entry = audit_entry(
                    {"action": action, **body},
                    state.version,
                    actor,
                    None,
                    time_now_text(self._clock()),
                    "",
                )
                try:
                    await self._store.commit(base.version, state.to_json(), [entry])
                    self._state = state
                    _announce([entry])
                    return
                except ConflictError:
                    pass
            attempt += 1
            await _back_off(attempt, deadline)
            await self.sync()

    def staleness(self) -> float:
        """Seconds since the state was last known to match the store (0 when it does)."""
        if self.stale_since is None:
            return 0.0
        return max(0.0, self._clock() - self.stale_since)

    async def reconcile(self, firing: list[WebhookAlert]) -> Step:
        """Repair missed webhooks from Alertmanager's own list of what fires now.

        `firing` is complete for this agent's receiver, so an alert the engine holds that is not
        in it was resolved and the resolve never arrived. Applied like a webhook: episodes and
        duplicates behave the same, and nothing older wins over something newer.
        """
        # Polling proves nothing about webhook delivery: the Watchdog only counts when pushed.
        firing = [a for a in firing if a.labels.get("alertname") != self.policy.watchdog]
        listed = {a.fingerprint for a in firing}
        resolves = [
            WebhookAlert(
                status="resolved",
                labels=dict(held.labels),
                startsAt=utc(held.starts_at),
                fingerprint=held.fingerprint,
            )
            for held in self._state.book.active.values()
            if held.fingerprint not in listed
        ]
        payload = WebhookPayload(
            version="4", status="firing" if firing else "resolved", alerts=[*firing, *resolves]
        )
        return await self._change(Actor("system", "reconcile"), None, payload=payload)

    async def tick(self) -> Step:
        """Re-evaluate time-driven changes: recovery after the hold, pin and alert expiry."""
        return await self._change(Actor("system", "clock"), None)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.tick_seconds)
            try:
                if self._shared:
                    await self.sync()
                await self.tick()
            except (StoreUnavailableError, ConflictError) as exc:
                log.warning("degradation tick could not store its change", error=str(exc))
            except Exception:
                log.exception("degradation tick failed")

    async def _change(
        self,
        actor: Actor,
        trace_id: str | None,
        payload: WebhookPayload | None = None,
        pin: Pin | object | None = KEEP_PIN,
        note: str = "",
    ) -> Step:
        """Queue one change and wait until it is stored (or refused).

        Changes that arrive while a commit is in flight are committed together in the next one
        (group commit): each still gets its own step, version and audit entries, but they share
        one durable write, so concurrent webhooks do not queue behind one fsync each.
        """
        future: asyncio.Future[Step] = asyncio.get_running_loop().create_future()
        context = contextvars.copy_context()
        self._queue.append(_Request(actor, trace_id, payload, pin, note, future, context))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="degradation-commit")
        # The commit runs in the flusher, so it goes on if the caller goes away (cancelling
        # `future` cancels only the wait): a change is never half-applied.
        return await future

    async def _flush(self) -> None:
        async with self._lock:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._settle(batch)

    async def _settle(self, batch: list[_Request]) -> None:
        """Commit `batch`, so that every waiter hears its own answer; nothing is left hanging."""
        try:
            await self._commit(batch)
        except (StoreUnavailableError, ConflictError) as exc:
            _fail(batch, exc)  # the store's trouble is every waiter's: all hear why
        except Exception as exc:
            if len(batch) == 1:
                log.exception("degradation commit failed")
                _fail(batch, exc)
                return
            # Not the store's trouble, so perhaps one request's: commit them one by one, so the
            # error stays with whichever request causes it.
            for request in batch:
                if not request.failed:
                    await self._settle([request])

    async def _commit(self, batch: list[_Request]) -> None:
        expected: int | None = None  # the stored version, when it differs from ours
        deadline = asyncio.get_running_loop().time() + CONFLICT_SECONDS
        attempt = 0
        while True:  # a conflicting writer: reload and try again
            base = self._state
            now = self._clock()
            time_text = time_now_text(now)
            state = base
            steps: list[tuple[State, Step]] = []
            entries: list[dict[str, Any]] = []
            for request in batch:
                if request.failed:
                    steps.append((state, Step(state, [], None, [])))  # answered already
                    continue
                try:
                    step = advance(state, self.policy, now, request.payload, request.pin)
                    audit = (
                        []
                        if step.state is state
                        else [
                            audit_entry(
                                e,
                                step.state.version,
                                request.actor,
                                request.trace_id,
                                time_text,
                                request.note,
                            )
                            for e in step.audit
                        ]
                    )
                except Exception as exc:
                    # One request that cannot be applied is refused alone; the rest go on.
                    request.context.run(
                        log.exception, "degradation change could not be applied; refused alone"
                    )
                    request.failed = True
                    _fail([request], RequestError(f"the change could not be applied: {exc!r}"))
                    steps.append((state, Step(state, [], None, [])))
                    continue
                steps.append((state, step))
                if step.state is not state:
                    entries += audit
                    state = step.state
            if state is not base:
                try:
                    await self._store.commit(
                        base.version if expected is None else expected, state.to_json(), entries
                    )
                except StoreUnavailableError:
                    if self.stale_since is None:
                        self.stale_since = self._clock()
                    raise
                except ConflictError:
                    attempt += 1
                    await _back_off(attempt, deadline)
                    stored = await self._store.load()
                    if stored is None:
                        # The store lost its data (a Redis restarted without persistence):
                        # this agent's state seeds it again rather than being refused forever.
                        expected = 0
                    else:
                        self._state = State.from_json(stored)
                        expected = None
                    continue
                self.stale_since = None
                self._state = state
                _announce(entries)
            for (before, step), request in zip(steps, batch, strict=True):
                if request.failed:
                    continue
                if not request.future.done():  # done: the caller went away
                    request.future.set_result(step)  # stored: nothing below may undo that
                if step.state is not before:
                    # In the context of the request that caused it: its log line carries
                    # that request's trace, not the one that happened to start this commit.
                    try:
                        request.context.run(self._after, before, step)
                    except Exception:
                        log.exception("degradation bookkeeping failed after a stored change")
            return

    def _after(self, old: State, step: Step) -> None:
        if step.transition is not None:
            before, after, cause = step.transition
            self.transitions[before.label, after.label, cause.value] += 1
            log.warning(
                "degradation level changed",
                previous_level=before.label,
                degradation_level=after.label,
                cause=cause.value,
                alerts=[c.alertname for c in step.state.reasons],
            )
        if step.state.suppressed and step.state.suppressed != old.suppressed:
            self.suppressions[step.state.suppressed.value] += 1
        for listener in self._listeners:
            try:
                listener(old, step.state)
            except Exception:
                log.exception("degradation listener failed")


async def _back_off(attempt: int, deadline: float) -> None:
    """Wait before a write's next try after its `attempt`-th conflict; ConflictError past
    `deadline` (event-loop time). The wait is random and grows with the attempts, so that two
    writers that keep colliding fall out of step."""
    if asyncio.get_running_loop().time() >= deadline:
        raise ConflictError("the state kept changing under this engine")
    if attempt > 1:
        await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))


def _fail(batch: Sequence[_Request], exc: BaseException) -> None:
    """Every waiter of `batch` still waiting hears `exc`; nothing is left hanging."""
    for request in batch:
        if not request.future.done():
            request.future.set_exception(exc)


def _announce(entries: Sequence[dict[str, Any]]) -> None:
    """Each stored audit entry as a log event of its own (logger `vigil.audit`), so that log
    shippers that read the audit trail from files keep receiving it."""
    for entry in entries:
        audit_log.info("audit entry", audit=entry)
