"""`kind: postgres`: pooled `SELECT 1`, then saturation, replication and a custom query."""

from __future__ import annotations

import math
import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from agent.config.checks import PostgresCheck
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
    conninfo = ctx.secret(check.dsn_env) if check.dsn_env else check.dsn
    password = ctx.secret(check.password_env)
    params = _target(conninfo or "")
    span_attrs = {
        "db.system.name": "postgresql",
        "server.address": params["host"],
        "server.port": params["port"],
        "db.namespace": params["dbname"],
    }
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "application_name": "vigil",
        "connect_timeout": max(1, math.ceil(check.timeout_seconds)),
    }
    if password is not None:
        kwargs["password"] = password

    async def make_pool() -> AsyncConnectionPool:
        pool = AsyncConnectionPool(
            conninfo or "",
            kwargs=kwargs,
            min_size=1,
            max_size=check.pool_max_size,
            open=False,
            check=AsyncConnectionPool.check_connection,
            name=f"vigil-{check.name}",
            reconnect_timeout=check.interval_seconds * 4,
        )
        await pool.open(wait=False)
        return pool

    pool = await ctx.resource(f"postgres:{check.name}", make_pool, _close_pool)
    try:
        # Half the deadline for a pooled connection: the rest diagnoses why none came.
        async with pool.connection(timeout=check.timeout_seconds / 2) as conn:
            with ctx.client_span("SELECT", {**span_attrs, "db.operation.name": "SELECT"}):
                started = time.perf_counter()
                await conn.execute("SELECT 1")
                latency = time.perf_counter() - started
            with ctx.client_span(
                "SELECT pg_settings", {**span_attrs, "db.operation.name": "SELECT"}
            ):
                cur = await conn.execute(_FACTS)
                facts = await cur.fetchone()
            custom = None
            if check.query is not None:
                with ctx.client_span("query", {**span_attrs, "db.operation.name": "query"}):
                    cur = await conn.execute(check.query.encode())
                    row = await cur.fetchone()
                    custom = None if row is None else row[0]
    except PoolTimeout:
        return await _diagnose(conninfo or "", kwargs, check, ctx, span_attrs)
    except psycopg.Error as exc:
        return _failure(exc)
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


async def _diagnose(
    conninfo: str,
    kwargs: dict[str, Any],
    check: PostgresCheck,
    ctx: ProbeContext,
    span_attrs: dict[str, Any],
) -> CheckResult:
    """The pool had no connection in time: one direct connect tells the operator why."""
    options = {**kwargs, "connect_timeout": max(1, math.floor(check.timeout_seconds / 2))}
    try:
        with ctx.client_span("connect", span_attrs):
            conn = await psycopg.AsyncConnection.connect(conninfo, **options)
        await conn.close()
    except psycopg.Error as exc:
        return _failure(exc)
    return CheckResult.unhealthy(
        Reason.SATURATION, "no pooled connection became free in time (connects work)"
    )


def _failure(exc: psycopg.Error) -> CheckResult:
    """A result naming the closed reason of a psycopg error."""
    text = str(exc).strip()
    lowered = text.lower()
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith("28") or "authentication failed" in lowered or "no pg_hba" in lowered:
        reason = Reason.AUTH_FAILED
    elif sqlstate == "53300" or "too many clients" in lowered or "remaining connection" in lowered:
        reason = Reason.SATURATION
    elif "connection refused" in lowered or "no such file" in lowered:
        reason = Reason.CONNECTION_REFUSED
    elif "timeout expired" in lowered or "timed out" in lowered:
        reason = Reason.TIMEOUT
    elif "could not translate host name" in lowered or "name or service" in lowered:
        reason = Reason.DNS_ERROR
    elif "ssl" in lowered or "certificate" in lowered:
        reason = Reason.TLS_ERROR
    elif isinstance(exc, psycopg.OperationalError):
        reason = Reason.CONNECTION_ERROR
    else:
        reason = Reason.SERVER_ERROR
    return CheckResult.unhealthy(reason, " ".join(text.split()) or type(exc).__name__)


def _target(conninfo: str) -> dict[str, Any]:
    """Host, port and database of a conninfo for span attributes (never the password)."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        params = {}
    host = str(params.get("host") or params.get("hostaddr") or "localhost").split(",")[0]
    port = str(params.get("port") or "5432").split(",")[0]
    return {
        "host": host,
        "port": int(port) if port.isdigit() else 5432,
        "dbname": str(params.get("dbname") or params.get("user") or "postgres"),
    }


async def _close_pool(pool: AsyncConnectionPool) -> None:
    await pool.close(timeout=1.0)
