"""`kind: redis`: PING round trip, then the INFO facts that decide degraded.

The probe sends PING and INFO over the check's kept RESP2 connection (`resp.py`).
"""

from __future__ import annotations

import time
from typing import Any

from agent.config.checks import RedisCheck
from agent.probes import resp
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason, rate

# Only the sections the rules read: a full INFO costs most of the probe's client CPU.
_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication")


async def probe_redis(check: RedisCheck, ctx: ProbeContext) -> CheckResult:
    """Rate a Redis server: answering PING, memory headroom, persistence and replication."""
    client = await resp.client(check, ctx)
    try:
        with ctx.client_span("PING", client.plan.span("PING")):
            started = time.perf_counter()
            await client.call("PING")
            latency = time.perf_counter() - started
        with ctx.client_span("INFO", client.plan.span("INFO")):
            reply = await client.call("INFO", *_SECTIONS)
    except resp.FAILURES as exc:
        return resp.failure(exc)
    info = _parse_info(reply)
    used = _int(info, "used_memory")
    limit = _int(info, "maxmemory")
    replica = info.get("role") == "slave"
    details: dict[str, Any] = {
        "latency_seconds": round(latency, 6),
        "server_version": info.get("redis_version", ""),
        "role": "replica" if replica else "primary",
        "replica": replica,
        "memory_used_bytes": used,
        "memory_max_bytes": limit,
        "clients_connected": _int(info, "connected_clients"),
        "clients_blocked": _int(info, "blocked_clients"),
        "rejected_connections": _int(info, "rejected_connections"),
        "evicted_keys": _int(info, "evicted_keys"),
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


def _parse_info(reply: Any) -> dict[str, str]:
    """`key:value` lines of an INFO reply; `# Section` lines and blank lines skipped."""
    if not isinstance(reply, bytes):
        raise resp.ProtocolError(f"INFO answered {type(reply).__name__}, not a bulk string")
    facts = {}
    for line in reply.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            facts[key] = value
    return facts


def _int(info: dict[str, str], key: str) -> int:
    """An integer field of INFO, 0 when absent or not a number."""
    value = info.get(key, "")
    return int(value) if value.isdigit() else 0
