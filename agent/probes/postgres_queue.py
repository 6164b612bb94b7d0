"""`kind: postgres_queue`: a job table's depth and oldest item, from the operator's own query.

The query runs on the check's pool, whose connections are made read-only
(`default_transaction_read_only`) with the check's `statement_timeout` when they open: a query
that would write is refused by the server, and one that runs long is cancelled there, not only
abandoned by the agent.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import math
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from agent.config.checks import PostgresQueueCheck
from agent.probes import backlog, pgpool
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason

_SESSION = (
    "SELECT set_config('default_transaction_read_only', 'on', false),"
    " set_config('statement_timeout', %s, false)"
)
_SHAPE = "one row of two columns: the depth, the oldest item's age in seconds"


async def probe_postgres_queue(check: PostgresQueueCheck, ctx: ProbeContext) -> CheckResult:
    """Rate a job table by the depth and the oldest item's age its configured query returns."""
    where = pgpool.target(check, ctx)
    timeout_ms = max(1, math.ceil(check.statement_timeout * 1000))
    pool = await pgpool.pool(check, ctx, where, functools.partial(_prepare, timeout_ms))
    try:
        # Half the deadline for a pooled connection: the rest diagnoses why none came.
        async with pool.connection(timeout=check.timeout_seconds / 2) as conn:
            with ctx.client_span("query", where.span("query")):
                # Bytes: a `%` in the operator's SQL is SQL, not a placeholder.
                cur = await conn.execute(check.query.encode())
                rows = await cur.fetchmany(2)
                columns = len(cur.description or ())
    except PoolTimeout:
        return await pgpool.diagnose(check, ctx, where)
    except psycopg.Error as exc:
        return pgpool.failure(exc)
    if len(rows) != 1 or columns != 2:
        found = f"{len(rows)} row(s)" if len(rows) != 1 else f"{columns} column(s)"
        return CheckResult.unhealthy(
            Reason.ASSERTION_FAILED, f"the queue query returned {found}, not {_SHAPE}"
        )
    depth, age = rows[0]
    try:
        return backlog.judge(check, _depth(depth), _age(age))
    except ValueError as exc:
        return CheckResult.unhealthy(Reason.ASSERTION_FAILED, f"the queue query returned {exc}")


async def _prepare(timeout_ms: int, conn: psycopg.AsyncConnection[Any]) -> None:
    """Make a new pooled connection read-only with the check's statement timeout."""
    await conn.execute(_SESSION, (str(timeout_ms),))


def _depth(value: Any) -> int:
    """The depth column as a count; anything but a whole number >= 0 is a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | decimal.Decimal | float):
        raise ValueError(f"a depth of {value!r}, not a number")
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise ValueError(f"a depth of {value}, not a whole number >= 0")
    return int(value)


def _age(value: Any) -> float | None:
    """The age column in seconds (a number or an interval; NULL: unknown, or nothing queued).

    A negative age (items stamped by a clock ahead of the server's) counts as 0.
    """
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return max(0.0, value.total_seconds())
    if isinstance(value, bool) or not isinstance(value, int | decimal.Decimal | float):
        raise ValueError(f"an age of {value!r}, not a number of seconds")
    if not math.isfinite(value):
        raise ValueError(f"an age of {value}, not a number of seconds")
    return max(0.0, float(value))
