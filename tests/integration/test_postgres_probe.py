"""`kind: postgres` against a private PostgreSQL: healthy, saturated, bad password, down, hung."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import pytest

from tests.harness.postgres import PostgresServer

pytestmark = pytest.mark.integration

PASSWORD = "pg-Secret-4711"


def _pg(server: PostgresServer, **extra: object) -> dict[str, object]:
    return {
        "name": "db",
        "kind": "postgres",
        "password_env": "VIGIL_TEST_PG_PASSWORD",
        "dsn": f"host=127.0.0.1 port={server.port} user=vigil dbname=postgres",
        "interval_seconds": 1,
        "timeout_seconds": 1,
        **extra,
    }


@pytest.fixture
def pg_role(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    """The session PostgreSQL with a `vigil` role whose password is in the environment."""
    with contextlib.suppress(psycopg.errors.DuplicateObject):
        postgres_server.create_role("vigil", PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_PG_PASSWORD", PASSWORD)
    return postgres_server


async def test_healthy_reports_version_and_connections(start_agent, pg_role) -> None:
    """A reachable server is healthy; version, connections and replica flag are reported."""
    agent = await start_agent([_pg(pg_role)])

    entry = await agent.wait_status("db", "healthy")

    details = entry["details"]
    assert details["server_version"].startswith("15")
    assert details["connections_max"] == pg_role.max_connections
    assert 1 <= details["connections_used"] < details["connections_max"]
    assert details["replica"] is False
    _, metrics = await agent.get("/metrics")
    assert f'vigil_postgres_connections_max{{check="db"}} {float(pg_role.max_connections)}' in (
        metrics
    )
    assert 'vigil_postgres_replica{check="db"} 0.0' in metrics


async def test_custom_query_expectation(start_agent, pg_role) -> None:
    """A custom query returning the expected value is healthy; another value is unhealthy."""
    agent = await start_agent(
        [
            _pg(pg_role, query="SELECT 40 + 2", expect="42"),
            {**_pg(pg_role, query="SELECT 'read-only'", expect="read-write"), "name": "mode"},
        ]
    )

    good = await agent.wait_status("db", "healthy")
    bad = await agent.wait_status("mode", "unhealthy")

    assert good["details"]["query_value"] == "42"
    assert bad["reason"] == "assertion_failed"
    assert "'read-only'" in bad["message"]


async def test_wrong_password_is_auth_failed(
    start_agent, pg_role, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong password is unhealthy with reason auth_failed."""
    monkeypatch.setenv("VIGIL_TEST_PG_PASSWORD", "not-the-password")
    agent = await start_agent([_pg(pg_role)])

    entry = await agent.wait_status("db", "unhealthy")

    assert entry["reason"] == "auth_failed"
    assert "password authentication failed" in entry["message"]


async def test_connections_near_max_is_degraded(
    start_agent, fresh_postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client connections at or above the ratio of max_connections make the check degraded."""
    server = fresh_postgres(max_connections=20)  # 3 of them reserved for superusers
    server.create_role("vigil", PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_PG_PASSWORD", PASSWORD)
    holders = [psycopg.connect(server.dsn(connect_timeout=5)) for _ in range(15)]
    try:
        agent = await start_agent([_pg(server, degraded_connections_ratio=0.8)])
        entry = await agent.wait_status("db", "degraded")
    finally:
        for conn in holders:
            conn.close()

    assert entry["reason"] == "saturation"
    assert entry["details"]["connections_used"] >= 16


async def test_stopped_server_then_recovery(
    start_agent, fresh_postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped server is unhealthy (refused); started again, the check recovers."""
    server = fresh_postgres()
    server.create_role("vigil", PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_PG_PASSWORD", PASSWORD)
    agent = await start_agent([_pg(server)])
    await agent.wait_status("db", "healthy")

    await asyncio.to_thread(server.stop)
    down = await agent.wait_status("db", "unhealthy")
    await asyncio.to_thread(server.start)
    await agent.wait_status("db", "healthy")

    assert down["reason"] in {"connection_refused", "connection_error"}


async def test_paused_server_times_out_and_agent_stays_up(
    start_agent, fresh_postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGSTOPped server hangs the probe: unhealthy by timeout, and the agent keeps answering."""
    server = fresh_postgres()
    server.create_role("vigil", PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_PG_PASSWORD", PASSWORD)
    agent = await start_agent([_pg(server)])
    await agent.wait_status("db", "healthy")

    server.pause()
    try:
        entry = await agent.wait_status("db", "unhealthy")
        status, _ = await asyncio.wait_for(agent.get("/healthz"), timeout=1)
    finally:
        server.resume()
    await agent.wait_status("db", "healthy", within=30)

    assert entry["reason"] == "timeout"
    assert status == 200
