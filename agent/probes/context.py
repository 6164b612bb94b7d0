"""What probes share: the tracer, long-lived clients keyed by check, and secrets from the env."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp
import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer

from agent.telemetry.redact import redactor
from agent.telemetry.spans import mark_error

T = TypeVar("T")
Closer = Callable[[Any], Awaitable[None]]
log = structlog.get_logger("vigil.probes")


class ProbeContext:
    """Resources a probe may reuse across runs; closed once when the agent stops.

    Clients are cached per check so a probe measures the dependency, not connection set-up
    (the PostgreSQL pool, the Redis client, the HTTP session with its keep-alive connections).
    """

    def __init__(
        self, tracer: Tracer | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.tracer = tracer or trace.get_tracer("vigil.probes")
        # Wall time as the agent reads it (a test's fake clock): what heartbeat ages compare to.
        self.clock = clock
        self._resources: dict[str, tuple[Any, Closer]] = {}
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._memo: dict[str, Any] = {}
        # Unix time of the latest beat of each heartbeat source (None: none yet).
        self.heartbeats: dict[str, Callable[[], float | None]] = {}

    def secret(self, variable: str | None) -> str | None:
        """The value of environment variable `variable`, registered for redaction."""
        if not variable:
            return None
        value = os.environ.get(variable)
        redactor.register(value)
        return value

    async def resource(self, key: str, make: Callable[[], Awaitable[T]], close: Closer) -> T:
        """The cached resource under `key`, made by `make` on first use."""
        found = self._resources.get(key)
        if found is None:
            value = await make()
            self._resources[key] = (value, close)
            return value
        return found[0]  # type: ignore[no-any-return]

    def memo(self, key: str, make: Callable[[], T]) -> T:
        """A value computed once per key (per-check plans that never need closing)."""
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = make()
        return found

    async def discard(self, key: str) -> None:
        """Close and forget the resource under `key`, so the next run makes a fresh one."""
        found = self._resources.pop(key, None)
        if found is not None:
            with contextlib.suppress(Exception):
                await found[1](found[0])

    def http_session(self, keepalive: bool) -> aiohttp.ClientSession:
        """The shared HTTP client session; a separate one closes every connection after use."""
        session = self._sessions.get(keepalive)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(force_close=not keepalive, limit=0, ttl_dns_cache=60)
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._sessions[keepalive] = session
        return session

    @contextlib.contextmanager
    def client_span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Span]:
        """A CLIENT child span around one call to the dependency; errors are recorded, redacted."""
        with self.tracer.start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=dict(attributes),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except Exception as exc:
                mark_error(span, type(exc).__qualname__, str(exc))
                raise

    async def close(self) -> None:
        """Close every cached client."""
        for key in list(self._resources):
            await self.discard(key)
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
