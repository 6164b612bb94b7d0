"""What only the Redis storages do: batching, its equivalence with single calls and with the
memory arithmetic, failures and recovery, the thread-safe face, and a cluster's slots."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence

import pytest
import redis
import redis.cluster
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.retry import Retry as SyncRetry

from agent.limits import (
    Decision,
    FailurePolicy,
    Limit,
    Limiter,
    LimitError,
    MemoryStorage,
    Outcome,
    StorageError,
    StorageTimeoutError,
    Strategy,
    SyncLimiter,
)
from agent.limits.redisstore import RedisStorage, SyncRedisStorage
from tests.harness.redis import RedisServer
from tests.harness.redis_cluster import RedisClusterServers
from tests.harness.wait import poll_until

pytestmark = pytest.mark.integration

# Windows so long that nothing drains during a test, and aligned windows (multiples of 366
# days since the epoch) that practically never roll during one: decisions then depend only
# on the order of the requests, not on the exact time.
LONG = 366 * 86400


def client_of(server: RedisServer, **opts: object) -> Redis:
    """An asyncio client with no retries."""
    return Redis(host=server.host, port=server.port, retry=Retry(NoBackoff(), 0), **opts)


def verdicts(decision: Decision) -> tuple[object, ...]:
    """Each limit's own outcome and what it has left, and the overall outcome: everything of a
    decision that does not depend on the exact time. (Which limit binds a denial is the one with
    the longest wait, and a window's wait depends on where the clock stands in the window: two
    runs, or Redis's `TIME` and the memory's fake clock, stand in different places.)"""
    parts = decision.parts or (decision,)
    return (decision.outcome, tuple((p.outcome, p.limit, p.remaining, p.policy) for p in parts))


limit_sets = st.lists(
    st.builds(
        lambda strategy, quota: (strategy, quota),
        st.sampled_from(list(Strategy)),
        st.integers(1, 8),
    ),
    min_size=1,
    max_size=3,
)
requests = st.lists(
    st.tuples(st.sampled_from("abcd"), st.integers(0, 9) | st.lists(st.integers(0, 9), min_size=3)),
    max_size=80,
)


def cost_of(cost: int | list[int], limits: Sequence[Limit]) -> int | dict[str, int]:
    """A generated cost for `limits`: one number, or one per limit by name (several limits:
    the memory storage takes a number only for a single limit)."""
    if isinstance(cost, int):
        return cost
    if len(limits) == 1:
        return cost[0]
    return {limit.name: each for limit, each in zip(limits, cost, strict=False)}


def limits_of(spec: Sequence[tuple[Strategy, int]]) -> list[Limit]:
    """The limits a generated spec names, each distinctly named."""
    return [Limit(quota, LONG, strategy, name=f"l{i}") for i, (strategy, quota) in enumerate(spec)]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(spec=limit_sets, sequence=requests)
def test_batched_decides_as_single_calls_and_as_memory(
    redis_server: RedisServer,
    spec: list[tuple[Strategy, int]],
    sequence: list[tuple[str, int | list[int]]],
) -> None:
    """Any requests decided in one batch, one call each, and in memory: the same decisions."""
    limits = limits_of(spec)
    sequence = [(key, cost_of(cost, limits)) for key, cost in sequence]

    async def run() -> tuple[list[Decision], list[Decision], int]:
        """Both Redis paths over fresh namespaces of one server."""
        client = client_of(redis_server)
        try:
            batched = RedisStorage(client, timeout=5.0)
            single = RedisStorage(client, timeout=5.0, max_batch=1, max_inflight=1)
            together = Limiter(f"b-{uuid.uuid4().hex}", limits, batched)
            one_by_one = Limiter(f"s-{uuid.uuid4().hex}", limits, single)
            first = await asyncio.gather(*(together.decide(k, c) for k, c in sequence))
            second = [await one_by_one.decide(k, c) for k, c in sequence]
            return first, second, batched.calls
        finally:
            await client.aclose()

    first, second, calls = asyncio.run(run())
    memory = Limiter("m", limits, MemoryStorage(lambda: 10**12))
    third = [asyncio.run(memory.decide(k, c)) for k, c in sequence]
    assert [verdicts(d) for d in first] == [verdicts(d) for d in second]
    assert [verdicts(d) for d in first] == [verdicts(d) for d in third]
    assert calls <= 1
    # The documented bound over a window that does not drain: at most each limit's quota.
    for key in "abcd":
        for limit in limits:
            spent = sum(
                c if isinstance(c, int) else c[limit.name]
                for (k, c), d in zip(sequence, first, strict=True)
                if k == key and d.allowed
            )
            assert spent <= limit.limit


async def test_one_tick_is_one_call(redis_server: RedisServer) -> None:
    """Decisions requested in one tick leave in one call, split only at `max_batch`."""
    client = client_of(redis_server)
    storage = RedisStorage(client, max_batch=100, max_inflight=4, timeout=5.0)
    limiter = Limiter(f"t-{uuid.uuid4().hex}", Limit(10, 60), storage)
    decisions = await asyncio.gather(*(limiter.decide(f"k{i}") for i in range(250)))
    assert all(d.outcome is Outcome.ALLOWED for d in decisions)
    assert storage.calls == 3
    await client.aclose()


async def test_denials_are_answered_locally_until_retry_after(redis_server: RedisServer) -> None:
    """A denied key is denied again without a call; another cost still goes to Redis."""
    client = client_of(redis_server)
    storage = RedisStorage(client, timeout=5.0)
    limiter = Limiter(f"c-{uuid.uuid4().hex}", Limit(2, 60, Strategy.SLIDING_LOG), storage)
    for _ in range(3):
        await limiter.decide("hot")
    calls = storage.calls
    cached = [await limiter.decide("hot") for _ in range(100)]
    assert storage.calls == calls
    assert all(d.outcome is Outcome.DENIED and d.remaining == 0 for d in cached)
    assert all(0 < d.retry_after <= 60 for d in cached)
    assert (await limiter.decide("hot", 2)).outcome is Outcome.DENIED
    assert storage.calls == calls + 1
    await client.aclose()


async def test_script_flush_is_recovered(redis_server: RedisServer) -> None:
    """After SCRIPT FLUSH (as after a restart) the script is loaded again and decides."""
    client = client_of(redis_server)
    limiter = Limiter(f"f-{uuid.uuid4().hex}", Limit(3, 60), RedisStorage(client, timeout=5.0))
    assert (await limiter.decide("k")).outcome is Outcome.ALLOWED
    await client.script_flush()
    decision = await limiter.decide("k")
    assert (decision.outcome, decision.remaining) == (Outcome.ALLOWED, 1)
    assert limiter.stats().storage_errors == 0
    await client.aclose()


def test_limits_beyond_exact_doubles_are_refused(redis_server: RedisServer) -> None:
    """A limit whose products leave the doubles' exact range is refused when bound."""
    storage = RedisStorage(client_of(redis_server))
    with pytest.raises(LimitError, match="2\\*\\*51"):
        Limiter("huge", Limit(10**9, 86400 * 30, Strategy.SLIDING_WINDOW), storage)
    with pytest.raises(LimitError, match="prefix"):
        RedisStorage(client_of(redis_server), prefix="a{b")


@pytest.mark.parametrize("policy", [FailurePolicy.OPEN, FailurePolicy.CLOSED])
async def test_killed_redis_applies_the_policy_then_recovers(
    fresh_redis: Callable[..., RedisServer], policy: FailurePolicy
) -> None:
    """Redis killed: the failure policy decides and counts; restarted: decisions work again."""
    server = fresh_redis(password="limits-secret-pw")
    client = client_of(server, password="limits-secret-pw")
    storage = RedisStorage(client, timeout=1.0)
    limiter = Limiter("killed", Limit(100, 60), storage, on_error=policy)
    assert (await limiter.decide("k")).outcome is Outcome.ALLOWED
    server.kill()
    failed = await limiter.decide("k")
    expected = Outcome.FAIL_OPEN if policy is FailurePolicy.OPEN else Outcome.FAIL_CLOSED
    assert failed.outcome is expected
    assert failed.allowed is (policy is FailurePolicy.OPEN)
    with pytest.raises(StorageError) as raised:
        await storage.bind([Limit(100, 60)], "direct").decide("k", 1)
    assert "limits-secret-pw" not in str(raised.value)
    assert "Redis" in str(raised.value)
    stats = limiter.stats()
    assert stats.storage_errors >= 1
    assert stats.decisions[expected] >= 1
    server.start()
    back = await poll_until(
        lambda: limiter.decide("k"),
        10,
        what="a decision by Redis after its restart",
    )
    # The restarted Redis holds no state (no persistence): the key starts afresh.
    assert back.outcome is Outcome.ALLOWED
    assert back.remaining == 99
    await client.aclose()


async def test_paused_redis_times_out_then_recovers(
    fresh_redis: Callable[..., RedisServer],
) -> None:
    """Redis frozen with SIGSTOP: decisions fail at the timeout, not later; SIGCONT recovers."""
    server = fresh_redis()
    client = client_of(server)
    storage = RedisStorage(client, timeout=0.05)
    limiter = Limiter("paused", Limit(100, 60), storage, on_error=FailurePolicy.CLOSED)
    binding = storage.bind([Limit(100, 60)], "paused-direct")
    assert (await limiter.decide("k")).outcome is Outcome.ALLOWED
    server.pause()
    try:
        with pytest.raises(StorageTimeoutError):
            await binding.decide("k", 1)
        decisions = await asyncio.gather(*(limiter.decide(f"k{i}") for i in range(20)))
        assert all(d.outcome is Outcome.FAIL_CLOSED for d in decisions)
        assert limiter.stats().storage_errors == 20
    finally:
        server.resume()
    back = await poll_until(
        lambda: limiter.decide("k"),
        10,
        what="an admission after SIGCONT",
    )
    assert back.outcome is Outcome.ALLOWED
    await client.aclose()


def test_sync_storage_from_many_threads(redis_server: RedisServer) -> None:
    """Eight threads on one key through the sync face: exactly the quota is admitted."""
    client = redis_server.client(socket_timeout=5.0)
    limiter = SyncLimiter(f"sync-{uuid.uuid4().hex}", Limit(50, 3600), SyncRedisStorage(client))
    admitted: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(40):
            allowed = limiter.hit("hot")
            with lock:
                admitted.append(allowed)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 50
    assert len(admitted) == 320
    decision = limiter.decide("other", 3)
    assert (decision.outcome, decision.remaining) == (Outcome.ALLOWED, 47)
    assert limiter.decide("other", 51).outcome is Outcome.NEVER
    client.close()


def test_sync_storage_fails_and_recovers(fresh_redis: Callable[..., RedisServer]) -> None:
    """Sync face: a frozen Redis times out at the socket timeout, a killed one fails; both heal."""
    server = fresh_redis()
    client = redis.Redis(
        host=server.host, port=server.port, socket_timeout=0.2, retry=SyncRetry(NoBackoff(), 0)
    )
    storage = SyncRedisStorage(client)
    limiter = SyncLimiter("sync-fail", Limit(100, 60), storage, on_error=FailurePolicy.CLOSED)
    assert limiter.decide("k").outcome is Outcome.ALLOWED
    server.pause()
    try:
        with pytest.raises(StorageTimeoutError):
            storage.bind([Limit(100, 60)], "direct").decide("k", 1)
        assert limiter.decide("k").outcome is Outcome.FAIL_CLOSED
    finally:
        server.resume()
    server.kill()
    assert limiter.decide("k").outcome is Outcome.FAIL_CLOSED
    assert limiter.stats().storage_errors == 2
    server.start()
    assert limiter.decide("k").outcome is Outcome.ALLOWED
    client.close()


async def test_cluster_spreads_keys_over_slots_without_crossslot(
    redis_cluster: RedisClusterServers,
) -> None:
    """Many namespaces and keys land on every node; multi-limit decisions never cross slots."""
    client = RedisCluster(host=redis_cluster.host, port=redis_cluster.port)
    storage = RedisStorage(client, timeout=5.0)
    limiters = [
        Limiter(
            f"ns{n}-{uuid.uuid4().hex[:6]}",
            [Limit(3, 60, Strategy.SLIDING_WINDOW, name="a"), Limit(2, 60, name="b")],
            storage,
        )
        for n in range(5)
    ]
    keys = [f"user{{{i}}}" if i % 7 == 0 else f"user{i}" for i in range(60)]
    first = await asyncio.gather(*(lim.decide(k) for lim in limiters for k in keys for _ in "xyz"))
    assert all(d.outcome in (Outcome.ALLOWED, Outcome.DENIED) for d in first)
    assert sum(d.allowed for d in first) == 2 * len(keys) * len(limiters)
    assert all(lim.stats().storage_errors == 0 for lim in limiters)
    # The keys of a decision are in one slot, and the decisions' keys are on every node.
    nodes = set()
    for lim in limiters:
        binding = lim._binding
        for key in keys:
            slots = {client.keyslot(name) for name in binding.keys(key)}
            assert len(slots) == 1
            nodes.add(client.get_node_from_key(binding.keys(key)[0]).name)
    assert len(nodes) == 3
    await client.aclose()


def test_sync_cluster(redis_cluster: RedisClusterServers) -> None:
    """The thread-safe face decides over a cluster client too."""
    client = redis.cluster.RedisCluster(host=redis_cluster.host, port=redis_cluster.port)
    limiter = SyncLimiter(
        f"sc-{uuid.uuid4().hex[:6]}",
        [Limit(2, 60, Strategy.FIXED_WINDOW, name="a"), Limit(3, 60, name="b")],
        SyncRedisStorage(client),
    )
    outcomes = [limiter.decide(f"k{i % 20}").outcome for i in range(60)]
    assert outcomes.count(Outcome.ALLOWED) == 40
    assert outcomes.count(Outcome.DENIED) == 20
    client.close()
