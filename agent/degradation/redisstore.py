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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from typing import Any

import redis as redis_sync
import redis.asyncio as aioredis
import redis.exceptions as rexc
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.retry import Retry as SyncRetry

from agent.config.model import RedisStoreSettings
from agent.degradation.breaker import BreakerConfig, CircuitBreaker, CircuitOpenError
from agent.degradation.errors import ConflictError, FlagStoreError, StoreUnavailableError
from agent.degradation.flags import FlagDefinition
from agent.degradation.flagstore import parse_document, render_document
from agent.telemetry.redact import redactor

log = structlog.get_logger("vigil.degradation.redis")
_COMMIT = resources.files("agent.degradation").joinpath("lua/commit.lua").read_text("utf-8")
AUDIT_MAXLEN = 100_000


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

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` audit entries, oldest first."""
        if limit <= 0:  # XREVRANGE refuses a count of 0
            return []
        try:
            rows: list[Any] = await self._client.xrevrange(self._audit_key, count=limit) or []
        except rexc.RedisError as exc:
            raise StoreUnavailableError(_describe(exc)) from exc
        return [json.loads(fields["entry"]) for _, fields in reversed(rows) if fields]

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
        """Stop listening and close the connections."""
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._client.aclose()


def _describe(exc: BaseException) -> str:
    return redactor.text(" ".join(str(exc).split()) or type(exc).__name__)


class RedisFlagStore:
    """Flag definitions in one Redis key, so that agents sharing the level share the flags.

    Synchronous (the `Flags` writer runs in a thread); other agents adopt a write through
    `Flags.refresh`, which the agent calls on every poll.
    """

    def __init__(self, settings: RedisStoreSettings) -> None:
        password = os.environ.get(settings.password_env) if settings.password_env else None
        redactor.register(password)
        self._client = redis_sync.Redis.from_url(
            settings.url,
            username=settings.username,
            password=password,
            socket_timeout=settings.timeout_seconds,
            socket_connect_timeout=settings.timeout_seconds,
            retry=SyncRetry(NoBackoff(), 0),
            client_name="vigil-flags",
        )
        self._key = f"{settings.key_prefix}:flags"
        self.name = f"flag key {self._key}"

    def load(self) -> list[FlagDefinition]:
        """The shared definitions; none before the first write."""
        try:
            raw = self._client.get(self._key)
        except rexc.RedisError as exc:
            msg = f"{self.name}: cannot read: {_describe(exc)}"
            raise FlagStoreError(msg) from exc
        return [] if raw is None else parse_document(raw, self.name)

    def save(self, definitions: Iterable[FlagDefinition]) -> None:
        """Replace the shared definitions (the write is one atomic SET)."""
        try:
            self._client.set(self._key, render_document(definitions))
        except rexc.RedisError as exc:
            msg = f"{self.name}: cannot write: {_describe(exc)}"
            raise FlagStoreError(msg) from exc

    def close(self) -> None:
        """Close the connections."""
        self._client.close()
