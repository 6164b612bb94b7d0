"""The connection pool the PostgreSQL-speaking probes share: DSN and password from the config,
one pool per check, and the closed reason of a failure."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from agent.config.checks import PostgresCheck, PostgresQueueCheck
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason

PostgresKind = PostgresCheck | PostgresQueueCheck
"""The check kinds that talk to PostgreSQL through a pool of this module."""
Configure = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """How one check connects: the conninfo, psycopg's connect arguments and span attributes."""

    conninfo: str
    kwargs: dict[str, Any]
    attrs: dict[str, Any]

    def span(self, operation: str) -> dict[str, Any]:
        """The attributes of a CLIENT span around `operation`."""
        return {**self.attrs, "db.operation.name": operation}


def target(check: PostgresKind, ctx: ProbeContext) -> Target:
    """The check's DSN (or the one its `dsn_env` holds) and password, read for this run."""
    conninfo = (ctx.secret(check.dsn_env) if check.dsn_env else check.dsn) or ""
    password = ctx.secret(check.password_env)
    params = _where(conninfo)
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "application_name": "vigil",
        "connect_timeout": max(1, math.ceil(check.timeout_seconds)),
    }
    if password is not None:
        kwargs["password"] = password
    attrs = {
        "db.system.name": "postgresql",
        "server.address": params["host"],
        "server.port": params["port"],
        "db.namespace": params["dbname"],
    }
    return Target(conninfo, kwargs, attrs)


async def pool(
    check: PostgresKind, ctx: ProbeContext, where: Target, configure: Configure | None = None
) -> AsyncConnectionPool:
    """The check's kept pool, opened on its first run; `configure` prepares each new connection."""

    async def make() -> AsyncConnectionPool:
        made = AsyncConnectionPool(
            where.conninfo,
            kwargs=where.kwargs,
            min_size=1,
            max_size=check.pool_max_size,
            open=False,
            configure=configure,
            check=AsyncConnectionPool.check_connection,
            name=f"vigil-{check.name}",
            reconnect_timeout=check.interval_seconds * 4,
        )
        await made.open(wait=False)
        return made

    return await ctx.resource(f"postgres:{check.name}", make, _close)


async def diagnose(check: PostgresKind, ctx: ProbeContext, where: Target) -> CheckResult:
    """The pool had no connection in time: one direct connect tells the operator why."""
    options = {**where.kwargs, "connect_timeout": max(1, math.floor(check.timeout_seconds / 2))}
    try:
        with ctx.client_span("connect", where.attrs):
            conn = await psycopg.AsyncConnection.connect(where.conninfo, **options)
        await conn.close()
    except psycopg.Error as exc:
        return failure(exc)
    return CheckResult.unhealthy(
        Reason.SATURATION, "no pooled connection became free in time (connects work)"
    )


# SQLSTATE 57014, query_canceled: the server's statement_timeout (or a cancel request) ended it.
_CANCELED = "57014"


def failure(exc: psycopg.Error) -> CheckResult:
    """An unhealthy result naming the closed reason of a psycopg error."""
    text = str(exc).strip()
    lowered = text.lower()
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith("28") or "authentication failed" in lowered or "no pg_hba" in lowered:
        reason = Reason.AUTH_FAILED
    elif sqlstate == "53300" or "too many clients" in lowered or "remaining connection" in lowered:
        reason = Reason.SATURATION
    elif sqlstate == _CANCELED:
        reason = Reason.TIMEOUT
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


def _where(conninfo: str) -> dict[str, Any]:
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


async def _close(pool: AsyncConnectionPool) -> None:
    await pool.close(timeout=1.0)
