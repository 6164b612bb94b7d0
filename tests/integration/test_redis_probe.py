"""`kind: redis` against a private Redis: healthy, memory near full, wrong password, paused."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.redis import RedisServer

pytestmark = pytest.mark.integration

PASSWORD = "redis-Secret-0815"


def _redis(server: RedisServer, **extra: object) -> dict[str, object]:
    return {
        "name": "cache",
        "kind": "redis",
        "url": f"redis://127.0.0.1:{server.port}/0",
        "interval_seconds": 1,
        "timeout_seconds": 0.8,
        **extra,
    }


async def test_healthy_reports_info(start_agent, redis_server: RedisServer) -> None:
    """A reachable Redis is healthy; memory, clients and role come from INFO."""
    agent = await start_agent([_redis(redis_server)])

    entry = await agent.wait_status("cache", "healthy")

    details = entry["details"]
    assert details["role"] == "primary"
    assert details["memory_used_bytes"] > 0
    assert details["clients_connected"] >= 1
    assert details["rdb_last_save_ok"] is True
    _, metrics = await agent.get("/metrics")
    assert 'vigil_redis_memory_used_bytes{check="cache"}' in metrics
    assert 'vigil_redis_connections_rejected_total{check="cache"} 0.0' in metrics


async def test_memory_near_maxmemory_is_degraded(start_agent, fresh_redis) -> None:
    """used_memory at or above the ratio of maxmemory is degraded (saturation)."""
    server: RedisServer = fresh_redis(
        maxmemory_bytes=8 * 1024 * 1024, extra_args=["--maxmemory-policy", "noeviction"]
    )
    limit = 8 * 1024 * 1024
    with server.client() as client:
        key = 0
        while int(client.info("memory")["used_memory"]) < 0.93 * limit:
            for _ in range(64):
                client.set(f"fill:{key}", b"x" * 1024)
                key += 1
        ratio = int(client.info("memory")["used_memory"]) / limit
    assert ratio > 0.9
    agent = await start_agent([_redis(server, degraded_memory_ratio=0.9)])

    entry = await agent.wait_status("cache", "degraded")

    assert entry["reason"] == "saturation"
    assert entry["details"]["memory_max_bytes"] == 8 * 1024 * 1024


async def test_password_required(start_agent, fresh_redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The right password from the env is healthy; a wrong one is auth_failed."""
    server: RedisServer = fresh_redis(password=PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_REDIS_OK", PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_REDIS_BAD", "wrong-password")
    agent = await start_agent(
        [
            _redis(server, password_env="VIGIL_TEST_REDIS_OK"),
            {**_redis(server, password_env="VIGIL_TEST_REDIS_BAD"), "name": "bad"},
        ]
    )

    await agent.wait_status("cache", "healthy")
    bad = await agent.wait_status("bad", "unhealthy")

    assert bad["reason"] == "auth_failed"


async def test_paused_redis_hangs_then_recovers(start_agent, fresh_redis) -> None:
    """A SIGSTOPped Redis (a hang, not a refusal) is unhealthy by timeout; resumed, it recovers."""
    server: RedisServer = fresh_redis()
    agent = await start_agent([_redis(server)])
    await agent.wait_status("cache", "healthy")

    server.pause()
    try:
        entry = await agent.wait_status("cache", "unhealthy")
        status, _ = await asyncio.wait_for(agent.get("/healthz"), timeout=1)
    finally:
        server.resume()
    await agent.wait_status("cache", "healthy")

    assert entry["reason"] == "timeout"
    assert status == 200


async def test_killed_redis_is_refused(start_agent, fresh_redis) -> None:
    """A killed Redis is unhealthy with a connection reason."""
    server: RedisServer = fresh_redis()
    agent = await start_agent([_redis(server)])
    await agent.wait_status("cache", "healthy")

    server.kill()
    entry = await agent.wait_status("cache", "unhealthy")

    assert entry["reason"] in {"connection_refused", "connection_error"}
