"""Three agents sharing one real Redis act as one: a webhook to any changes the level on all,
Redis down means 503 and stale, Redis back means converged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.checks import quiet_disk
from tests.harness.redis import RedisServer
from tests.harness.wait import poll_until

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "alertmanager"
TOKEN = "shared-Hook-5521"
DISK = quiet_disk(5)


def _payload(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text())["body"])


def _degradation(redis: RedisServer) -> dict[str, Any]:
    return {
        "enabled": True,
        "store": "redis",
        "redis": {
            "url": f"redis://127.0.0.1:{redis.port}/0",
            "poll_seconds": 0.2,
            "timeout_seconds": 0.5,
        },
        "webhook": {"bearer_token_env": "VIGIL_SHARED_HOOK"},
        "admin_token_env": "VIGIL_SHARED_HOOK",
        "hold_seconds": 0.5,
        "tick_seconds": 0.2,
        "rules": [{"name": "demo", "matchers": ['alertname="DemoDown"'], "level": "degraded"}],
    }


async def _levels(agents: list[Any]) -> list[tuple[str, float]]:
    out = []
    for agent in agents:
        _, status = await agent.send("GET", "/api/v1/degradation")
        out.append((status["level"], status["stale_seconds"]))
    return out


async def _converge(agents: list[Any], level: str, within: float = 5.0) -> None:
    async def converged() -> bool:
        return all(lv == level for lv, _ in await _levels(agents))

    await poll_until(converged, within, what=f"every agent at {level}")


async def test_three_agents_converge_through_redis(
    start_agent, fresh_redis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A webhook to one agent reaches all three within 1 s; Redis down -> 503 and stale."""
    monkeypatch.setenv("VIGIL_SHARED_HOOK", TOKEN)
    redis: RedisServer = fresh_redis()
    agents = [
        await start_agent(
            DISK, degradation=_degradation(redis), data_dir=str(tmp_path / f"agent-{i}")
        )
        for i in range(3)
    ]

    status, _ = await agents[0].send(
        "POST", "/webhooks/alertmanager", _payload("webhook_firing.json"), token=TOKEN
    )
    assert status == 200
    await _converge(agents, "degraded", within=1.0)

    redis.kill()
    down, body = await agents[1].send(
        "POST", "/webhooks/alertmanager", _payload("webhook_resolved.json"), token=TOKEN
    )
    assert down == 503, body

    async def all_stale() -> list[tuple[str, float]] | None:
        levels = await _levels(agents)
        return levels if all(stale > 0 for _, stale in levels) else None

    levels = await poll_until(all_stale, 10, what="every agent to see the store unreachable")
    assert all(level == "degraded" for level, _ in levels), levels

    redis.start()  # empty: the state in Redis is gone; the next write must not be refused

    async def reachable() -> bool:  # the agent's own poll reached the restarted Redis
        return (await _levels(agents[2:]))[0][1] == 0

    await poll_until(reachable, 10, what="the third agent to reach Redis again")
    status, _ = await agents[2].send(
        "POST", "/webhooks/alertmanager", _payload("webhook_resolved.json"), token=TOKEN
    )
    assert status == 200
    await _converge(agents, "full", within=5.0)
    assert all(stale == 0 for _, stale in await _levels(agents))
    _, metrics = await agents[1].get("/metrics")
    assert 'vigil_breaker_state{breaker="degradation-redis",state="closed"} 1.0' in metrics


async def test_flags_are_shared_through_redis(
    start_agent, fresh_redis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A flag written through one agent answers the same on the others within a poll."""
    monkeypatch.setenv("VIGIL_SHARED_HOOK", TOKEN)
    redis: RedisServer = fresh_redis()
    agents = [
        await start_agent(
            DISK, degradation=_degradation(redis), data_dir=str(tmp_path / f"agent-{i}")
        )
        for i in range(2)
    ]

    status, _ = await agents[0].send(
        "PUT", "/api/v1/flags/search", {"enabled": True, "rollout_percent": 100}, token=TOKEN
    )
    assert status == 200

    async def evaluated() -> Any:
        _, answer = await agents[1].send("POST", "/api/v1/flags/search/evaluate", {})
        return answer if answer["value"] else None

    answer = await poll_until(evaluated, 2, what="the flag on the second agent")

    assert answer["value"] is True
    _, listed = await agents[1].send("GET", "/api/v1/flags")
    assert [f["key"] for f in listed["flags"]] == ["search"]

    # A segment is shared with the flags: the second agent follows a change made on the first.
    rule = {"attribute": "tier", "operator": "in", "values": ["beta"]}
    await agents[0].send("PUT", "/api/v1/segments/beta", {"targeting": [rule]}, token=TOKEN)
    await agents[0].send(
        "PUT", "/api/v1/flags/search", {"enabled": True, "segments": ["beta"]}, token=TOKEN
    )

    async def off_outside_the_segment() -> Any:
        _, answer = await agents[1].send(
            "POST", "/api/v1/flags/search/evaluate", {"context": {"tier": "gold"}}
        )
        return answer if not answer["value"] else None

    answer = await poll_until(off_outside_the_segment, 2, what="the segment on the second agent")
    assert answer["reason"] == "default"
    _, shared = await agents[1].send("GET", "/api/v1/segments")
    assert shared["used_by"] == {"beta": ["search"]}
