"""`kind: redis_list` and `kind: redis_stream` against a private Redis: real lists, a real stream
with consumer groups whose entries are read and not acknowledged, and the failures around them."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis as redis_py

from tests.harness.redis import RedisServer
from tests.harness.wait import FakeClock

pytestmark = pytest.mark.integration

PASSWORD = "queue-Secret-2718"
WRONG = "queue-Wrong-3141"
CELERY_HIGH = "celery\x06\x163"  # Celery's list for priority step 3 of queue `celery`


def _list(server: RedisServer, name: str, keys: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "redis_list",
        "url": f"redis://127.0.0.1:{server.port}/0",
        "keys": keys,
        "capacity": 10,
        "interval_seconds": 1,
        "timeout_seconds": 0.8,
        **extra,
    }


def _stream(
    server: RedisServer, name: str, stream: str, group: str, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "redis_stream",
        "url": f"redis://127.0.0.1:{server.port}/0",
        "stream": stream,
        "group": group,
        "capacity": 100,
        "interval_seconds": 1,
        "timeout_seconds": 0.8,
        **extra,
    }


def _server_ms(client: redis_py.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _fill(client: redis_py.Redis, key: str, items: int) -> None:
    if items:
        client.rpush(key, *(json.dumps({"task": f"t{i}"}) for i in range(items)))


async def test_list_depth_is_the_sum_of_its_keys(start_agent, fresh_redis) -> None:
    """Depth sums LLEN over every key, a missing key counting as empty; capacity is reported."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        _fill(client, "celery", 3)
        _fill(client, CELERY_HIGH, 2)
    keys = ["celery", CELERY_HIGH, "celery\x06\x169"]
    agent = await start_agent([_list(server, "jobs", keys)])

    entry = await agent.wait_status("jobs", "healthy")

    assert entry["details"] == {
        "depth_by_key": {"celery": 3, CELERY_HIGH: 2, "celery\x06\x169": 0},
        "depth": 5,
        "capacity": 10,
        "depth_ratio": 0.5,
    }
    _, metrics = await agent.get("/metrics")
    assert 'vigil_external_queue_depth{check="jobs"} 5.0' in metrics
    assert 'vigil_external_queue_capacity{check="jobs"} 10.0' in metrics
    assert 'vigil_external_queue_oldest_age_seconds{check="jobs"}' not in metrics


async def test_list_degraded_then_unhealthy_by_ratio(start_agent, fresh_redis) -> None:
    """8 of 10 items is degraded, 10 of 10 unhealthy, both with reason saturation."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        _fill(client, "rq:queue:default", 8)
        _fill(client, "rq:queue:high", 10)
    agent = await start_agent(
        [
            _list(server, "default", ["rq:queue:default"]),
            _list(server, "high", ["rq:queue:high"]),
        ]
    )

    degraded = await agent.wait_status("default", "degraded")
    unhealthy = await agent.wait_status("high", "unhealthy")

    assert (degraded["reason"], degraded["message"]) == ("saturation", "8 of 10 items queued (80%)")
    assert (unhealthy["reason"], unhealthy["message"]) == (
        "saturation",
        "10 of 10 items queued (100%)",
    )
    assert unhealthy["details"]["capacity"] == 10


async def test_a_key_that_is_not_a_list_is_unhealthy(start_agent, fresh_redis) -> None:
    """A key holding a string is not a queue: unhealthy, assertion_failed, naming the key."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        client.set("celery", "not a list")
    agent = await start_agent([_list(server, "jobs", ["celery"])])

    entry = await agent.wait_status("jobs", "unhealthy")

    assert entry["reason"] == "assertion_failed"
    assert entry["message"] == "key 'celery' holds something other than a list"


async def test_stream_pending_lag_and_depth_of_a_real_group(start_agent, fresh_redis) -> None:
    """Entries read and not acked are pending, unread ones lag; depth is their sum."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        for i in range(6):
            client.xadd("orders", {"n": i})
        client.xgroup_create("orders", "billing", id="0")
        read = client.xreadgroup("billing", "worker-1", {"orders": ">"}, count=4)
        client.xack("orders", "billing", read[0][1][0][0])  # one of the four is done
    agent = await start_agent([_stream(server, "orders", "orders", "billing", capacity=10)])

    entry = await agent.wait_status("orders", "healthy")

    details = entry["details"]
    assert {k: details[k] for k in ("pending", "lag", "depth", "capacity", "consumers")} == {
        "pending": 3,
        "lag": 2,
        "depth": 5,
        "capacity": 10,
        "consumers": 1,
    }
    assert 0 <= details["oldest_age_seconds"] < 60
    _, metrics = await agent.get("/metrics")
    assert 'vigil_external_queue_pending{check="orders"} 3.0' in metrics
    assert 'vigil_external_queue_lag{check="orders"} 2.0' in metrics
    assert 'vigil_external_queue_depth{check="orders"} 5.0' in metrics
    assert 'vigil_external_queue_capacity{check="orders"} 10.0' in metrics


async def test_stream_age_comes_from_entry_ids_and_the_server_clock(
    start_agent, fresh_redis
) -> None:
    """The oldest entry's age is its ID's time against Redis' TIME, whatever the agent's clock."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        hours_ago = _server_ms(client) - 2 * 3600 * 1000
        for i in range(3):  # stamped two hours ago, as a producer two hours ago would have
            client.xadd("mail", {"n": i}, id=f"{hours_ago + i}-0")
        client.xadd("mail", {"n": 3})
        client.xgroup_create("mail", "unread", id="0")  # nothing delivered: oldest is the first
        client.xgroup_create("mail", "busy", id="0")
        client.xreadgroup("busy", "worker-1", {"mail": ">"}, count=1)  # oldest is pending
        client.xgroup_create("mail", "done", id="0")
        for entry_id, _ in client.xreadgroup("done", "worker-1", {"mail": ">"})[0][1]:
            client.xack("mail", "done", entry_id)
    ages = {"degraded_age_seconds": 3600, "unhealthy_age_seconds": 86400}
    # The agent's wall clock a day behind: an age taken from it would be negative, clamped to 0.
    agent = await start_agent(
        [
            _stream(server, "unread", "mail", "unread", **ages),
            _stream(server, "busy", "mail", "busy", unhealthy_age_seconds=3600),
            _stream(server, "done", "mail", "done", **ages),
        ],
        clock=FakeClock(time.time() - 86400),
    )

    unread = await agent.wait_status("unread", "degraded")
    busy = await agent.wait_status("busy", "unhealthy")
    done = await agent.wait_status("done", "healthy")

    for entry in (unread, busy):
        assert entry["reason"] == "latency"
        assert 7200 <= entry["details"]["oldest_age_seconds"] < 7200 + 60
    assert (unread["details"]["pending"], unread["details"]["lag"]) == (0, 4)
    assert (busy["details"]["pending"], busy["details"]["lag"]) == (1, 3)
    assert (done["details"]["depth"], done["details"]["oldest_age_seconds"]) == (0, 0.0)


async def test_stream_unhealthy_by_ratio(start_agent, fresh_redis) -> None:
    """A group owing its whole capacity is unhealthy by saturation."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        for i in range(5):
            client.xadd("events", {"n": i})
        client.xgroup_create("events", "audit", id="0")
    agent = await start_agent([_stream(server, "events", "events", "audit", capacity=5)])

    entry = await agent.wait_status("events", "unhealthy")

    assert (entry["reason"], entry["message"]) == ("saturation", "5 of 5 items queued (100%)")


async def test_lag_redis_cannot_tell_is_counted_up_to_past_capacity(
    start_agent, fresh_redis
) -> None:
    """After XDEL of an undelivered entry Redis reports no lag: it is counted, up to capacity+1."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        ids = [client.xadd("jobs", {"n": i}) for i in range(12)]
        client.xgroup_create("jobs", "small", id="0")
        client.xgroup_create("jobs", "large", id="0")
        client.xdel("jobs", ids[5])
        lags = {g["name"]: g["lag"] for g in client.xinfo_groups("jobs")}
    assert lags == {b"small": None, b"large": None}  # the case the counting exists for
    agent = await start_agent(
        [
            _stream(server, "small", "jobs", "small", capacity=4),
            _stream(server, "large", "jobs", "large", capacity=50),
        ]
    )

    small = await agent.wait_status("small", "unhealthy")
    large = await agent.wait_status("large", "healthy")

    assert small["details"]["lag"] == 5  # capacity + 1: enough to know it is over capacity
    assert small["reason"] == "saturation"
    assert large["details"]["lag"] == 11
    assert large["details"]["depth"] == 11


async def test_missing_stream_and_missing_group_are_unhealthy(start_agent, fresh_redis) -> None:
    """A stream that does not exist, or a group it lacks, is a clear unhealthy result."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        client.xadd("orders", {"n": 1})
        client.xgroup_create("orders", "billing", id="0")
        client.set("plain", "x")
    agent = await start_agent(
        [
            _stream(server, "no-stream", "nowhere", "billing"),
            _stream(server, "no-group", "orders", "shipping"),
            _stream(server, "not-stream", "plain", "billing"),
        ]
    )

    no_stream = await agent.wait_status("no-stream", "unhealthy")
    no_group = await agent.wait_status("no-group", "unhealthy")
    not_stream = await agent.wait_status("not-stream", "unhealthy")

    assert (no_stream["reason"], no_stream["message"]) == (
        "assertion_failed",
        "stream 'nowhere' does not exist",
    )
    assert (no_group["reason"], no_group["message"]) == (
        "assertion_failed",
        "stream 'orders' has no consumer group 'shipping'",
    )
    assert not_stream["message"] == "key 'plain' holds something other than a stream"


async def test_wrong_password_is_auth_failed_without_the_secret(
    start_agent, fresh_redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong password is auth_failed for both kinds, and no password shows in /health or logs."""
    server: RedisServer = fresh_redis(password=PASSWORD)
    with server.client() as client:
        _fill(client, "celery", 2)
        client.xadd("orders", {"n": 1})
        client.xgroup_create("orders", "billing", id="0")
    monkeypatch.setenv("VIGIL_TEST_QUEUE_OK", PASSWORD)
    monkeypatch.setenv("VIGIL_TEST_QUEUE_BAD", WRONG)
    agent = await start_agent(
        [
            _list(server, "list-ok", ["celery"], password_env="VIGIL_TEST_QUEUE_OK"),
            _list(server, "list-bad", ["celery"], password_env="VIGIL_TEST_QUEUE_BAD"),
            _stream(server, "stream-bad", "orders", "billing", password_env="VIGIL_TEST_QUEUE_BAD"),
        ]
    )

    ok = await agent.wait_status("list-ok", "healthy")
    bad_list = await agent.wait_status("list-bad", "unhealthy")
    bad_stream = await agent.wait_status("stream-bad", "unhealthy")

    assert ok["details"]["depth"] == 2
    assert bad_list["reason"] == bad_stream["reason"] == "auth_failed"
    _, health = await agent.get("/health")
    _, metrics = await agent.get("/metrics")
    for text in (health, metrics, agent.log.getvalue()):
        assert PASSWORD not in text
        assert WRONG not in text


async def test_killed_redis_is_unhealthy_for_both_kinds(start_agent, fresh_redis) -> None:
    """A killed Redis makes both queue kinds unhealthy with a connection reason."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        client.xadd("orders", {"n": 1})
        client.xgroup_create("orders", "billing", id="0")
    agent = await start_agent(
        [_list(server, "jobs", ["celery"]), _stream(server, "orders", "orders", "billing")]
    )
    await agent.wait_status("jobs", "healthy")
    await agent.wait_status("orders", "healthy")

    server.kill()
    jobs = await agent.wait_status("jobs", "unhealthy")
    orders = await agent.wait_status("orders", "unhealthy")

    assert jobs["reason"] in {"connection_refused", "connection_error"}
    assert orders["reason"] in {"connection_refused", "connection_error"}
