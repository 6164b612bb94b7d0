"""Degradation state shared in Redis by several agents.

Every change is one compare-and-set on the state's version (`lua/commit.lua`), which also
appends the audit entries to a stream and publishes the new version. Pub/sub is a hint that
makes other agents look at once; they also poll on every engine tick, because pub/sub drops
messages whenever a subscriber reconnects. When Redis cannot be reached every call raises
StoreUnavailableError: the webhook answers 503 (Alertmanager retries) and the engine keeps its
last level, reported as stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent.config.model import RedisStoreSettings
from agent.degradation.audit import AuditPage, AuditQuery
from agent.degradation.breaker import BreakerConfig, CircuitBreaker, CircuitOpenError
from agent.degradation.errors import (
    ConflictError,
    FlagStoreError,
    QueryError,
    StoreUnavailableError,
)
from agent.degradation.flags import FlagDocument
from agent.degradation.flagstore import parse_document, render_document
from agent.telemetry.redact import redactor

log = structlog.get_logger("vigil.degradation.redis")
_COMMIT = resources.files("agent.degradation").joinpath("lua/commit.lua").read_text("utf-8")
AUDIT_MAXLEN = 100_000
SCAN_ENTRIES = 10_000
"""Audit entries one history page reads at most (the stream is filtered here, not in Redis)."""
SCAN_BATCH = 500
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


class RedisStateStore:
    """The StateStore protocol over one Redis: a hash for the state, a stream for the audit."""

    shared = True

    def __init__(self, settings: RedisStoreSettings) -> None:
        password = os.environ.get(settings.password_env) if settings.password_env else None
        redactor.register(password)
        self._settings = settings
        self._client = aioredis.Redis.from_url(
            settings.url,
            username=settings.username,
            password=password,
            socket_timeout=settings.timeout_seconds,
            socket_connect_timeout=settings.timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            client_name="vigil-degradation",
            decode_responses=True,
        )
        self._commit = self._client.register_script(_COMMIT)
        prefix = settings.key_prefix
        self._state_key = f"{prefix}:state"
        self._audit_key = f"{prefix}:audit"
        self.channel = f"{prefix}:changed"
        self._listener: asyncio.Task[None] | None = None
        # While Redis is down, fail fast instead of paying a timeout on every webhook and tick.
        self.breaker = CircuitBreaker(
            "degradation-redis",
            BreakerConfig(
                window_size=10,
                minimum_calls=3,
                failure_rate_threshold=50.0,
                slow_call_duration_seconds=settings.timeout_seconds,
                wait_in_open_seconds=max(1.0, settings.poll_seconds),
                record_exceptions=(rexc.RedisError,),
            ),
        )

    async def load(self) -> dict[str, Any] | None:
        """The shared state document, or None before the first write."""
        try:
            async with self.breaker.guard():
                doc = await self._client.hget(self._state_key, "doc")
        except CircuitOpenError as exc:
            raise StoreUnavailableError(f"Redis circuit open ({exc})") from exc
        except rexc.RedisError as exc:
            raise StoreUnavailableError(_describe(exc)) from exc
        return None if doc is None else dict(json.loads(doc))

    async def commit(
        self, expected_version: int, state: dict[str, Any], audit: Sequence[dict[str, Any]]
    ) -> None:
        """Compare-and-set `state` over `expected_version`, appending `audit` atomically."""
        args: list[Any] = [
            str(expected_version),
            json.dumps(state, separators=(",", ":"), sort_keys=True),
            str(state["version"]),
            self.channel,
            str(AUDIT_MAXLEN),
            *(json.dumps(e, separators=(",", ":"), default=str) for e in audit),
        ]
        try:
            async with self.breaker.guard():
                stored, version = await self._commit(
                    keys=[self._state_key, self._audit_key], args=args
                )
        except CircuitOpenError as exc:
            raise StoreUnavailableError(f"Redis circuit open ({exc})") from exc
        except rexc.RedisError as exc:
            raise StoreUnavailableError(_describe(exc)) from exc
        if int(stored) != 1:
            msg = f"shared state is at version {version}, not {expected_version}"
            raise ConflictError(msg)

    async def history(self, query: AuditQuery) -> AuditPage:
        """The audit entries `query` selects, newest first, a page at a time.

        The stream is read backwards from the cursor (a stream id) and filtered here, at most
        SCAN_ENTRIES entries per page: a page may then hold fewer than `limit` entries, and its
        cursor goes on from where the scan stopped.
        """
        end = "+" if query.cursor is None else f"({_stream_id(query.cursor)}"
        entries: list[dict[str, Any]] = []
        scanned = 0
        last: str | None = None  # the newest entry not looked at yet is older than this one
        exhausted = False
        try:
            async with self.breaker.guard():
                while len(entries) < query.limit and scanned < SCAN_ENTRIES:
                    count = min(SCAN_BATCH, SCAN_ENTRIES - scanned)
                    rows: list[Any] = (
                        await self._client.xrevrange(self._audit_key, max=end, min="-", count=count)
                        or []
                    )
                    for stream_id, fields in rows:
                        scanned += 1
                        last = stream_id
                        entry = json.loads(fields["entry"]) if fields else None
                        if entry is not None and query.matches(entry):
                            entries.append(entry)
                            if len(entries) == query.limit:
                                break
                    if len(entries) < query.limit and len(rows) < count:
                        exhausted = True
                        break
                    end = f"({last}"
                more = not exhausted and last is not None and await self._older_than(last)
        except CircuitOpenError as exc:
            raise StoreUnavailableError(f"Redis circuit open ({exc})") from exc
        except rexc.RedisError as exc:
            raise StoreUnavailableError(_describe(exc)) from exc
        return AuditPage(entries, last if more else None)

    async def _older_than(self, stream_id: str) -> bool:
        rows = await self._client.xrevrange(self._audit_key, max=f"({stream_id}", min="-", count=1)
        return bool(rows)

    async def listen(self, on_change: Callable[[], Awaitable[object]]) -> None:
        """Call `on_change` whenever another agent announces a new version (best effort)."""
        self._listener = asyncio.create_task(self._listen(on_change), name="degradation-pubsub")

    async def _listen(self, on_change: Callable[[], Awaitable[object]]) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                async for _message in pubsub.listen():
                    await on_change()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: polling covers the gap; retry the subscription
                log.debug("pub/sub interrupted", error=_describe(exc))
                await asyncio.sleep(self._settings.poll_seconds)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def close(self) -> None:
        """Stop listening and close the connections, waiting at most `CLOSE_SECONDS` for each."""
        if self._listener is not None:
            self._listener.cancel()
            await _within(asyncio.gather(self._listener, return_exceptions=True), "pub/sub")
            self._listener = None
        await _within(self._client.aclose(), "connections")


# How long stopping waits for the pub/sub listener, then for the connections to close. A
# listener cancelled inside redis-py's read can wait on its connection for good (seen once in
# a few thousand test runs, under load): stopping the agent must not.
CLOSE_SECONDS = 5.0


async def _within(awaitable: Awaitable[object], what: str) -> None:
    """Wait for `awaitable` up to `CLOSE_SECONDS`; past that, log and leave it behind."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=CLOSE_SECONDS)
    if not done:
        log.warning("redis store did not close in time; left behind", part=what)


def _stream_id(cursor: str) -> str:
    """The stream id a cursor of this store holds; QueryError for any other text."""
    if not _STREAM_ID.fullmatch(cursor):
        raise QueryError(f"not a cursor of this audit trail: {cursor[:40]!r}")
    return cursor


def _describe(exc: BaseException) -> str:
    return redactor.text(" ".join(str(exc).split()) or type(exc).__name__)


class RedisFlagStore:
    """Flag definitions in one Redis key, so that agents sharing the level share the flags.

    Other agents adopt a write through `Flags.refresh`, which the agent calls on every poll.
    """

    def __init__(self, settings: RedisStoreSettings) -> None:
        password = os.environ.get(settings.password_env) if settings.password_env else None
        redactor.register(password)
        self._client = aioredis.Redis.from_url(
            settings.url,
            username=settings.username,
            password=password,
            socket_timeout=settings.timeout_seconds,
            socket_connect_timeout=settings.timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            client_name="vigil-flags",
        )
        self._key = f"{settings.key_prefix}:flags"
        self.name = f"flag key {self._key}"

    async def load(self) -> FlagDocument:
        """The shared definitions and segments; none before the first write."""
        try:
            raw = await self._client.get(self._key)
        except rexc.RedisError as exc:
            msg = f"{self.name}: cannot read: {_describe(exc)}"
            raise FlagStoreError(msg) from exc
        return FlagDocument() if raw is None else parse_document(raw, self.name)

    async def save(self, flags: FlagDocument) -> None:
        """Replace the shared definitions and segments (the write is one atomic SET)."""
        try:
            await self._client.set(self._key, render_document(flags))
        except rexc.RedisError as exc:
            msg = f"{self.name}: cannot write: {_describe(exc)}"
            raise FlagStoreError(msg) from exc

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()
