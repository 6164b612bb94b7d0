"""`kind: postgres_queue` against a private PostgreSQL: a real job table read by the operator's
query, read-only and under a statement timeout, and the failures around it."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.harness.postgres import PostgresServer

pytestmark = pytest.mark.integration

PASSWORD = "pgqueue-Secret-1618"
ROLE = "vigil_queue"
_TABLES = itertools.count()


@pytest.fixture
def queue_role(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    """The session PostgreSQL with a login role for the checks, its password in the env."""
    with contextlib.suppress(psycopg.errors.DuplicateObject):
        postgres_server.create_role(ROLE, PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_PGQ_PASSWORD", PASSWORD)
    return postgres_server


@pytest.fixture
def jobs(queue_role: PostgresServer) -> Iterator[str]:
    """A fresh job table the check's role may read, dropped after the test."""
    table = f"jobs_{next(_TABLES)}"
    queue_role.execute(
        f"CREATE TABLE {table} (id serial PRIMARY KEY, state text NOT NULL,"
        " enqueued_at timestamptz NOT NULL DEFAULT now())"
    )
    # DELETE too: a query that writes must be stopped by the read-only session, not by a grant.
    queue_role.execute(f"GRANT SELECT, DELETE ON {table} TO {ROLE}")
    yield table
    queue_role.execute(f"DROP TABLE {table}")


def _enqueue(server: PostgresServer, table: str, state: str, count: int, age: str = "0s") -> None:
    """Insert `count` jobs in `state`, enqueued `age` (a PostgreSQL interval) ago."""
    server.execute(
        f"INSERT INTO {table} (state, enqueued_at)"  # noqa: S608 - the test's own table name
        " SELECT %s, now() - %s::interval FROM generate_series(1, %s)",
        (state, age, count),
    )


def _query(table: str) -> str:
    return (
        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(enqueued_at))"  # noqa: S608
        f" FROM {table} WHERE state = 'queued'"
    )


def _check(server: PostgresServer, name: str, query: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "postgres_queue",
        "dsn": f"host=127.0.0.1 port={server.port} user={ROLE} dbname=postgres",
        "password_env": "VIGIL_TEST_PGQ_PASSWORD",
        "query": query,
        "capacity": 10,
        "interval_seconds": 1,
        "timeout_seconds": 1,
        **extra,
    }


async def test_healthy_reports_depth_capacity_and_age(start_agent, queue_role, jobs) -> None:
    """Queued jobs are the depth and the oldest one gives the age; done jobs do not count."""
    _enqueue(queue_role, jobs, "queued", 3, "30s")
    _enqueue(queue_role, jobs, "done", 2, "1h")
    agent = await start_agent([_check(queue_role, "mail", _query(jobs))])

    entry = await agent.wait_status("mail", "healthy")

    details = entry["details"]
    assert {k: details[k] for k in ("depth", "capacity", "depth_ratio")} == {
        "depth": 3,
        "capacity": 10,
        "depth_ratio": 0.3,
    }
    assert 30 <= details["oldest_age_seconds"] < 90
    _, metrics = await agent.get("/metrics")
    assert 'vigil_external_queue_depth{check="mail"} 3.0' in metrics
    assert 'vigil_external_queue_capacity{check="mail"} 10.0' in metrics
    assert 'vigil_external_queue_oldest_age_seconds{check="mail"}' in metrics


async def test_degraded_and_unhealthy_by_ratio(start_agent, queue_role, jobs) -> None:
    """4 queued jobs are 80 % of a capacity of 5 (degraded) and all of 4 (unhealthy)."""
    _enqueue(queue_role, jobs, "queued", 4)
    agent = await start_agent(
        [
            _check(queue_role, "roomy", _query(jobs), capacity=5),
            _check(queue_role, "full", _query(jobs), capacity=4),
        ]
    )

    roomy = await agent.wait_status("roomy", "degraded")
    full = await agent.wait_status("full", "unhealthy")

    assert (roomy["reason"], roomy["message"]) == ("saturation", "4 of 5 items queued (80%)")
    assert (full["reason"], full["message"]) == ("saturation", "4 of 4 items queued (100%)")


async def test_degraded_and_unhealthy_by_age(start_agent, queue_role, jobs) -> None:
    """A job waiting two hours crosses an hour's age threshold; an interval column works too."""
    _enqueue(queue_role, jobs, "queued", 1, "2 hours")
    interval = f"SELECT count(*), now() - min(enqueued_at) FROM {jobs}"  # noqa: S608
    agent = await start_agent(
        [
            _check(
                queue_role,
                "slow",
                _query(jobs),
                degraded_age_seconds=3600,
                unhealthy_age_seconds=86400,
            ),
            _check(queue_role, "stuck", interval, unhealthy_age_seconds=3600),
        ]
    )

    slow = await agent.wait_status("slow", "degraded")
    stuck = await agent.wait_status("stuck", "unhealthy")

    assert slow["reason"] == stuck["reason"] == "latency"
    assert 7200 <= stuck["details"]["oldest_age_seconds"] < 7200 + 60


async def test_empty_table_has_age_zero(start_agent, queue_role, jobs) -> None:
    """No queued job: the query's NULL age reads as 0 and the queue is healthy."""
    agent = await start_agent([_check(queue_role, "idle", _query(jobs), unhealthy_age_seconds=1)])

    entry = await agent.wait_status("idle", "healthy")

    assert (entry["details"]["depth"], entry["details"]["oldest_age_seconds"]) == (0, 0.0)


async def test_a_query_that_writes_is_refused(start_agent, queue_role, jobs) -> None:
    """The connection is read-only: a DELETE in the query fails and the jobs stay."""
    _enqueue(queue_role, jobs, "queued", 2)
    deleting = f"WITH gone AS (DELETE FROM {jobs} RETURNING 1) SELECT count(*), NULL FROM gone"  # noqa: S608
    agent = await start_agent([_check(queue_role, "eraser", deleting)])

    entry = await agent.wait_status("eraser", "unhealthy")

    assert entry["reason"] == "server_error"
    assert "read-only transaction" in entry["message"]
    assert queue_role.execute(f"SELECT count(*) FROM {jobs}") == [(2,)]  # noqa: S608


async def test_a_slow_query_hits_the_statement_timeout(start_agent, queue_role, jobs) -> None:
    """The server cancels a query past statement_timeout_seconds: unhealthy, reason timeout."""
    slow = f"SELECT count(*), NULL FROM {jobs}, pg_sleep(5)"  # noqa: S608
    agent = await start_agent(
        [_check(queue_role, "sleepy", slow, statement_timeout_seconds=0.2, timeout_seconds=1)]
    )

    entry = await agent.wait_status("sleepy", "unhealthy")

    assert entry["reason"] == "timeout"
    assert "statement timeout" in entry["message"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "SELECT 1",
            "the queue query returned 1 column(s), not one row of two columns: the depth, "
            "the oldest item's age in seconds",
        ),
        (
            "SELECT 1, 2 UNION ALL SELECT 3, 4",
            "the queue query returned 2 row(s), not one row of two columns: the depth, "
            "the oldest item's age in seconds",
        ),
        ("SELECT 'many', NULL", "the queue query returned a depth of 'many', not a number"),
        ("SELECT -1, NULL", "the queue query returned a depth of -1, not a whole number >= 0"),
        (
            "SELECT 1, 'yesterday'",
            "the queue query returned an age of 'yesterday', not a number of seconds",
        ),
    ],
)
async def test_a_query_of_the_wrong_shape_is_unhealthy(
    start_agent, queue_role, query: str, message: str
) -> None:
    """Anything but one row of a whole depth and a numeric age is assertion_failed, saying why."""
    agent = await start_agent([_check(queue_role, "odd", query)])

    entry = await agent.wait_status("odd", "unhealthy")

    assert (entry["reason"], entry["message"]) == ("assertion_failed", message)


async def test_wrong_password_is_auth_failed_without_the_secret(
    start_agent, queue_role, jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong password is auth_failed, and neither password shows in /health, metrics or logs."""
    wrong = "pgqueue-Wrong-2236"
    monkeypatch.setenv("VIGIL_TEST_PGQ_PASSWORD", wrong)
    agent = await start_agent([_check(queue_role, "mail", _query(jobs))])

    entry = await agent.wait_status("mail", "unhealthy")

    assert entry["reason"] == "auth_failed"
    _, health = await agent.get("/health")
    _, metrics = await agent.get("/metrics")
    for text in (health, metrics, agent.log.getvalue()):
        assert wrong not in text
        assert PASSWORD not in text


async def test_killed_server_is_unhealthy(
    start_agent, fresh_postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crashed (SIGKILLed) server makes the check unhealthy with a connection reason."""
    server: PostgresServer = fresh_postgres()
    server.create_role(ROLE, PASSWORD)
    server.execute("CREATE TABLE jobs (state text)")
    server.execute(f"GRANT SELECT ON jobs TO {ROLE}")
    monkeypatch.setenv("VIGIL_TEST_PGQ_PASSWORD", PASSWORD)
    agent = await start_agent([_check(server, "mail", "SELECT count(*), NULL FROM jobs")])
    await agent.wait_status("mail", "healthy")

    server.kill()
    entry = await agent.wait_status("mail", "unhealthy")

    assert entry["reason"] in {"connection_refused", "connection_error"}
