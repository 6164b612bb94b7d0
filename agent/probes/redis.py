"""`kind: redis`: PING round trip, then the INFO facts that decide degraded."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent.config.checks import RedisCheck
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason, rate

# Only the sections the rules read: a full INFO costs most of the probe's client CPU.
_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication")


async def probe_redis(check: RedisCheck, ctx: ProbeContext) -> CheckResult:
    """Rate a Redis server: answering PING, memory headroom, persistence and replication."""
    target = urlsplit(check.url)
    span_attrs = {
        "db.system.name": "redis",
        "server.address": target.hostname or "localhost",
        "server.port": target.port or 6379,
    }

    async def make_client() -> aioredis.Redis:
        # No retries: a probe reports what one attempt saw; hiding failures is the worst lie.
        return aioredis.Redis.from_url(
            check.url,
            username=check.username,
            password=ctx.secret(check.password_env),
            socket_timeout=check.timeout_seconds,
            socket_connect_timeout=check.timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            client_name="vigil",
        )

    client = await ctx.resource(f"redis:{check.name}", make_client, _close_client)
    try:
        with ctx.client_span("PING", {**span_attrs, "db.operation.name": "PING"}):
            started = time.perf_counter()
            await client.ping()
            latency = time.perf_counter() - started
        with ctx.client_span("INFO", {**span_attrs, "db.operation.name": "INFO"}):
            info = await _execute(client)("INFO", *_SECTIONS)
    except rexc.RedisError as exc:
        return _failure(exc)
    used = int(info.get("used_memory", 0))
    limit = int(info.get("maxmemory", 0))
    replica = info.get("role") == "slave"
    details: dict[str, Any] = {
        "latency_seconds": round(latency, 6),
        "server_version": str(info.get("redis_version", "")),
        "role": "replica" if replica else "primary",
        "replica": replica,
        "memory_used_bytes": used,
        "memory_max_bytes": limit,
        "clients_connected": int(info.get("connected_clients", 0)),
        "clients_blocked": int(info.get("blocked_clients", 0)),
        "rejected_connections": int(info.get("rejected_connections", 0)),
        "evicted_keys": int(info.get("evicted_keys", 0)),
        "rdb_last_save_ok": info.get("rdb_last_bgsave_status", "ok") == "ok",
    }
    if limit:
        details["memory_ratio"] = round(used / limit, 4)
    if replica:
        details["replication_link_up"] = info.get("master_link_status") == "up"
    return rate(
        [
            (
                bool(limit) and used / limit >= check.degraded_memory_ratio,
                Reason.SATURATION,
                f"memory {used} of {limit} bytes used",
            ),
            (
                replica and not details["replication_link_up"],
                Reason.REPLICATION,
                "replica's link to its primary is down",
            ),
            (
                not details["rdb_last_save_ok"],
                Reason.PERSISTENCE,
                "the last RDB save failed",
            ),
            (
                check.degraded_blocked_clients is not None
                and details["clients_blocked"] >= check.degraded_blocked_clients,
                Reason.SATURATION,
                f"{details['clients_blocked']} blocked clients",
            ),
            (
                check.degraded_latency_seconds is not None
                and latency >= check.degraded_latency_seconds,
                Reason.LATENCY,
                f"PING took {latency * 1000:.1f} ms",
            ),
        ],
        **details,
    )


def _failure(exc: rexc.RedisError) -> CheckResult:
    """A result naming the closed reason of a redis-py error."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError) or any(
        word in lowered for word in ("wrongpass", "noauth", "invalid password", "invalid username")
    ):
        reason = Reason.AUTH_FAILED
    elif isinstance(exc, rexc.TimeoutError):
        reason = Reason.TIMEOUT
    elif "connection refused" in lowered:
        reason = Reason.CONNECTION_REFUSED
    elif "name or service not known" in lowered or "nodename nor servname" in lowered:
        reason = Reason.DNS_ERROR
    elif "ssl" in lowered or "certificate" in lowered:
        reason = Reason.TLS_ERROR
    elif isinstance(exc, rexc.ConnectionError):
        reason = Reason.CONNECTION_ERROR
    else:
        reason = Reason.SERVER_ERROR
    return CheckResult.unhealthy(reason, text)


def _execute(client: aioredis.Redis) -> Callable[..., Awaitable[dict[str, Any]]]:
    # redis-py leaves `execute_command` unannotated in some releases and not in others: a
    # typed view of it keeps mypy's verdict the same whichever release is installed.
    return cast(Callable[..., Awaitable[dict[str, Any]]], client.execute_command)


async def _close_client(client: aioredis.Redis) -> None:
    await client.aclose()
