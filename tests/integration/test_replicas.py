"""Replication facts against real replicas: a PostgreSQL hot standby and a Redis replica."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.harness.postgres import PostgresServer
from tests.harness.redis import RedisServer

pytestmark = pytest.mark.integration

PASSWORD = "pg-Replica-4711"


def _pg(server: PostgresServer, **extra: object) -> dict[str, object]:
    return {
        "name": "standby",
        "kind": "postgres",
        "password_env": "VIGIL_TEST_PG_PASSWORD",
        "dsn": f"host=127.0.0.1 port={server.port} user=vigil dbname=postgres",
        "interval_seconds": 1,
        "timeout_seconds": 1,
        **extra,
    }


def _redis(server: RedisServer, **extra: object) -> dict[str, object]:
    return {
        "name": "cache",
        "kind": "redis",
        "url": f"redis://127.0.0.1:{server.port}/0",
        "interval_seconds": 1,
        "timeout_seconds": 0.8,
        **extra,
    }


def _sample(metrics: str, name: str, check: str) -> float:
    """The value of the one sample of `name` for `check` in a Prometheus exposition."""
    found = re.findall(rf'^{name}\{{check="{check}"\}} (\S+)$', metrics, re.MULTILINE)
    assert len(found) == 1, f"{name} for {check}: {found}"
    return float(found[0])


@pytest.fixture
def pg_pair(
    pg_primary_and_replica: tuple[PostgresServer, PostgresServer],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[PostgresServer, PostgresServer]:
    """Primary and standby with a `vigil` role (created on the primary, replayed on the standby)."""
    primary, standby = pg_primary_and_replica
    primary.create_role("vigil", PASSWORD)
    primary.execute("CREATE TABLE beats (at timestamptz NOT NULL DEFAULT now())")
    primary.execute("INSERT INTO beats DEFAULT VALUES")
    # The standby has now replayed a commit, so pg_last_xact_replay_timestamp() is set.
    standby.wait_for_replay()
    monkeypatch.setenv("VIGIL_TEST_PG_PASSWORD", PASSWORD)
    return primary, standby


async def test_postgres_standby_is_a_healthy_replica(start_agent, pg_pair) -> None:
    """A caught-up standby is healthy with replica=True and a small lag, in /health and /metrics."""
    _, standby = pg_pair
    agent = await start_agent([_pg(standby)])

    entry = await agent.wait_status("standby", "healthy")

    details = entry["details"]
    assert details["replica"] is True
    assert 0.0 <= details["replication_lag_seconds"] < 5.0
    _, metrics = await agent.get("/metrics")
    assert 'vigil_postgres_replica{check="standby"} 1.0' in metrics
    assert 0.0 <= _sample(metrics, "vigil_postgres_replication_lag_seconds", "standby") < 5.0


async def test_postgres_paused_replay_is_degraded_then_recovers(start_agent, pg_pair) -> None:
    """Replay paused while the primary commits is degraded (replication); resumed, healthy again."""
    primary, standby = pg_pair
    agent = await start_agent([_pg(standby, degraded_replication_lag_seconds=1)])
    await agent.wait_status("standby", "healthy")

    await asyncio.to_thread(standby.execute, "SELECT pg_wal_replay_pause()")
    try:
        for _ in range(5):
            await asyncio.to_thread(primary.execute, "INSERT INTO beats DEFAULT VALUES")
            await asyncio.sleep(0.5)
        entry = await agent.wait_status("standby", "degraded", within=15)
        _, metrics = await agent.get("/metrics")
    finally:
        await asyncio.to_thread(standby.execute, "SELECT pg_wal_replay_resume()")
    healthy = await agent.wait_status("standby", "healthy", within=15)

    assert entry["reason"] == "replication"
    assert entry["details"]["replica"] is True
    assert entry["details"]["replication_lag_seconds"] >= 1.0
    assert _sample(metrics, "vigil_postgres_replication_lag_seconds", "standby") >= 1.0
    assert healthy["details"]["replication_lag_seconds"] < 1.0
    await asyncio.to_thread(standby.wait_for_replay)
    assert standby.execute("SELECT count(*) FROM beats") == [(6,)]


async def test_postgres_standby_without_primary_is_degraded(start_agent, pg_pair) -> None:
    """A standby whose primary is gone (no WAL receiver) is degraded, like a Redis link down."""
    primary, standby = pg_pair
    agent = await start_agent([_pg(standby)])
    await agent.wait_status("standby", "healthy")

    await asyncio.to_thread(primary.kill)
    entry = await agent.wait_status("standby", "degraded", "unhealthy", within=8)

    assert entry["reason"] == "replication"


async def test_redis_replica_link_down_is_degraded(start_agent, redis_primary_and_replica) -> None:
    """A replica with its link up is healthy; its primary killed, it is degraded (replication)."""
    primary, replica = redis_primary_and_replica
    agent = await start_agent([_redis(replica)])

    healthy = await agent.wait_status("cache", "healthy")
    _, metrics_up = await agent.get("/metrics")
    await asyncio.to_thread(primary.kill)
    degraded = await agent.wait_status("cache", "degraded")
    _, metrics_down = await agent.get("/metrics")

    assert healthy["details"]["role"] == "replica"
    assert healthy["details"]["replica"] is True
    assert healthy["details"]["replication_link_up"] is True
    assert 'vigil_redis_replica{check="cache"} 1.0' in metrics_up
    assert 'vigil_redis_replication_link_up{check="cache"} 1.0' in metrics_up
    assert degraded["reason"] == "replication"
    assert degraded["details"]["role"] == "replica"
    assert degraded["details"]["replication_link_up"] is False
    assert 'vigil_redis_replica{check="cache"} 1.0' in metrics_down
    assert 'vigil_redis_replication_link_up{check="cache"} 0.0' in metrics_down


async def test_redis_replica_recovers_when_primary_returns(
    start_agent, redis_primary_and_replica
) -> None:
    """After its primary restarts on the same port, the replica resyncs and is healthy again."""
    primary, replica = redis_primary_and_replica
    agent = await start_agent([_redis(replica)])
    await agent.wait_status("cache", "healthy")

    await asyncio.to_thread(primary.kill)
    await agent.wait_status("cache", "degraded")
    await asyncio.to_thread(primary.start)
    entry = await agent.wait_status("cache", "healthy", within=20)
    _, metrics = await agent.get("/metrics")

    assert entry["details"]["replication_link_up"] is True
    assert 'vigil_redis_replication_link_up{check="cache"} 1.0' in metrics
