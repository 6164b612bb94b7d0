"""`kind: postgres`: pooled `SELECT 1`, then saturation, replication and a custom query."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from agent.config.checks import PostgresCheck
from agent.probes import pgpool
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason, rate

# One round trip for every fact the health rules need. pg_stat_database counts every role's
# backends (pg_stat_activity hides other roles' details from a monitoring role). On an idle
# primary a replica's replay timestamp ages although nothing is behind, so lag is 0 when
# everything received is replayed. A standby whose WAL receiver is gone (primary unreachable)
# freezes both positions, so the lag alone would read 0: the receiver's presence is a fact too.
_FACTS = """
SELECT current_setting('server_version') AS version,
       current_setting('max_connections')::int AS max_connections,
       (SELECT sum(numbackends)::int FROM pg_stat_database) AS used,
       pg_is_in_recovery() AS replica,
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS lag,
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver) AS receiving
"""


async def probe_postgres(check: PostgresCheck, ctx: ProbeContext) -> CheckResult:
    """Rate a PostgreSQL server: reachable, authenticated, answering, not saturated, not lagging."""
    where = pgpool.target(check, ctx)
    pool = await pgpool.pool(check, ctx, where)
    try:
        # Half the deadline for a pooled connection: the rest diagnoses why none came.
        async with pool.connection(timeout=check.timeout_seconds / 2) as conn:
            with ctx.client_span("SELECT", where.span("SELECT")):
                started = time.perf_counter()
                await conn.execute("SELECT 1")
                latency = time.perf_counter() - started
            with ctx.client_span("SELECT pg_settings", where.span("SELECT")):
                cur = await conn.execute(_FACTS)
                facts = await cur.fetchone()
            custom = None
            if check.query is not None:
                with ctx.client_span("query", where.span("query")):
                    cur = await conn.execute(check.query.encode())
                    row = await cur.fetchone()
                    custom = None if row is None else row[0]
    except PoolTimeout:
        return await pgpool.diagnose(check, ctx, where)
    except psycopg.Error as exc:
        return pgpool.failure(exc)
    if facts is None:
        return CheckResult.unhealthy(Reason.PROTOCOL_ERROR, "the facts query returned no row")
    version, max_connections, used, replica, lag, receiving = facts
    details: dict[str, Any] = {
        "latency_seconds": round(latency, 6),
        "server_version": version,
        "connections_used": used,
        "connections_max": max_connections,
        "connections_ratio": round(used / max_connections, 4) if max_connections else 0.0,
        "replica": bool(replica),
    }
    if lag is not None:
        details["replication_lag_seconds"] = float(lag)
    if replica:
        details["wal_receiver_up"] = bool(receiving)
    if check.query is not None:
        details["query_value"] = None if custom is None else str(custom)
        if details["query_value"] != check.expect:
            return CheckResult.unhealthy(
                Reason.ASSERTION_FAILED,
                f"custom query returned {details['query_value']!r}, expected {check.expect!r}",
                **details,
            )
    return rate(
        [
            (
                details["connections_ratio"] >= check.degraded_connections_ratio,
                Reason.SATURATION,
                f"{used} of {max_connections} connections in use",
            ),
            (
                bool(replica) and not receiving,
                Reason.REPLICATION,
                "standby has no WAL receiver: its primary is unreachable",
            ),
            (
                lag is not None and lag >= check.degraded_replication_lag_seconds,
                Reason.REPLICATION,
                f"replication lag {lag or 0:.1f}s",
            ),
            (
                check.degraded_latency_seconds is not None
                and latency >= check.degraded_latency_seconds,
                Reason.LATENCY,
                f"SELECT 1 took {latency * 1000:.1f} ms",
            ),
        ],
        **details,
    )
