"""The limiter over every storage, one behavioural suite: memory, a Redis, a Redis Cluster.

Memory decides at the times of a fake clock; Redis at its own `TIME`, so every assertion here
holds whatever the exact time is (a quota of 5 per minute denies the 6th request however long
the first five took). Waiting for a `retry_after` moves the fake clock, or sleeps that long on
Redis (every such window is under half a second).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent.limits import Decision, Limit, Limiter, MemoryStorage, Outcome, Strategy
from agent.limits.policy import TAT_STRATEGIES
from agent.limits.redisstore import RedisStorage
from tests.harness.redis import RedisServer
from tests.harness.redis_cluster import RedisClusterServers

pytestmark = pytest.mark.integration

STRATEGIES = list(Strategy)
# For the multi-limit tests: each strategy is paired with one of another family.
OTHER = {
    Strategy.GCRA: Strategy.SLIDING_LOG,
    Strategy.TOKEN_BUCKET: Strategy.FIXED_WINDOW,
    Strategy.LEAKY_BUCKET: Strategy.SLIDING_WINDOW,
    Strategy.FIXED_WINDOW: Strategy.GCRA,
    Strategy.SLIDING_WINDOW: Strategy.SLIDING_LOG,
    Strategy.SLIDING_LOG: Strategy.TOKEN_BUCKET,
}


class FakeNanos:
    """The memory storage's clock: whole nanoseconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock `seconds` forward, rounded up to a nanosecond."""
        self.now += math.ceil(seconds * 1_000_000_000)


class World:
    """Limiters over one storage kind, and the way time passes for it."""

    def __init__(self, kind: str, storage: MemoryStorage | RedisStorage, clock: FakeNanos | None):
        self.kind = kind
        self.storage = storage
        self.clock = clock

    def limiter(self, limits: Limit | Sequence[Limit]) -> Limiter:
        """A limiter with a name (its Redis namespace) no other test uses."""
        return Limiter(f"suite-{uuid.uuid4().hex[:12]}", limits, self.storage)

    async def wait(self, seconds: float) -> None:
        """Let `seconds` pass: on the fake clock, or really (Redis keeps its own time)."""
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            # A millisecond more: Redis expires keys and rolls windows at whole milliseconds.
            await asyncio.sleep(seconds + 0.002)


def redis_client(server: RedisServer) -> Redis:
    """An asyncio client with no retries (a retried script could spend twice)."""
    return Redis(host=server.host, port=server.port, retry=Retry(NoBackoff(), 0))


@pytest.fixture(params=["memory", "redis", "cluster"])
async def world(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[World]:
    """Each storage kind in turn (the cluster fixture is started only when needed)."""
    if request.param == "memory":
        clock = FakeNanos()
        yield World("memory", MemoryStorage(clock), clock)
        return
    client: Redis | RedisCluster
    if request.param == "redis":
        client = redis_client(redis_server)
    else:
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        client = RedisCluster(host=cluster.host, port=cluster.port)
    try:
        yield World(request.param, RedisStorage(client, timeout=2.0), None)
    finally:
        await client.aclose()


async def decide_all(limiter: Limiter, key: str, costs: Sequence[int]) -> list[Decision]:
    """The decisions for `costs` on `key`, one after the other."""
    return [await limiter.decide(key, cost) for cost in costs]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_admits_the_quota_then_denies(world: World, strategy: Strategy) -> None:
    """Five of 5 per minute are admitted; the sixth is denied with a positive retry_after."""
    limiter = world.limiter(Limit(5, 60, strategy))
    decisions = await decide_all(limiter, "client", [1] * 6)
    assert [d.outcome for d in decisions] == [Outcome.ALLOWED] * 5 + [Outcome.DENIED]
    assert decisions[-1].retry_after > 0
    assert decisions[-1].retry_after_header is not None
    assert not decisions[-1].allowed
    assert limiter.stats().decisions[Outcome.DENIED] == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_remaining_counts_down(world: World, strategy: Strategy) -> None:
    """Each admission leaves one less, and keys do not share their quota."""
    limiter = world.limiter(Limit(5, 60, strategy))
    decisions = await decide_all(limiter, "a", [1] * 5)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert all(d.limit == 5 for d in decisions)
    other = await limiter.decide("b")
    assert (other.outcome, other.remaining) == (Outcome.ALLOWED, 4)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_denial_consumes_nothing(world: World, strategy: Strategy) -> None:
    """After 4 of 5 are spent a cost of 2 is denied, and a cost of 1 still fits."""
    limiter = world.limiter(Limit(5, 60, strategy))
    await decide_all(limiter, "k", [1] * 4)
    denied = await limiter.decide("k", 2)
    assert denied.outcome is Outcome.DENIED
    assert denied.remaining == 1
    fits = await limiter.decide("k", 1)
    assert (fits.outcome, fits.remaining) == (Outcome.ALLOWED, 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_cost_that_never_fits(world: World, strategy: Strategy) -> None:
    """A cost above the quota is `never`, with an infinite retry, and spends nothing."""
    limiter = world.limiter(Limit(5, 60, strategy))
    never = await limiter.decide("k", 6)
    assert never.outcome is Outcome.NEVER
    assert math.isinf(never.retry_after)
    assert never.retry_after_header is None
    assert (await limiter.decide("k", 5)).outcome is Outcome.ALLOWED
    assert limiter.stats().decisions[Outcome.NEVER] == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_several_limits_are_all_or_nothing(world: World, strategy: Strategy) -> None:
    """The tighter limit denies the fourth request, and the looser one is not charged for it."""
    limiter = world.limiter(
        [Limit(5, 60, strategy, name="loose"), Limit(3, 60, OTHER[strategy], name="tight")]
    )
    decisions = await decide_all(limiter, "k", [1] * 4)
    assert [d.outcome for d in decisions] == [Outcome.ALLOWED] * 3 + [Outcome.DENIED]
    denied = decisions[-1]
    assert denied.policy == "tight"
    loose, tight = denied.parts
    assert (loose.outcome, loose.remaining) == (Outcome.ALLOWED, 2)
    assert (tight.outcome, tight.remaining) == (Outcome.DENIED, 0)
    # A cost the tight limit could never admit charges neither limit.
    never = await limiter.decide("other", 4)
    assert never.outcome is Outcome.NEVER
    after = await limiter.decide("other", 3)
    assert after.outcome is Outcome.ALLOWED
    assert [part.remaining for part in after.parts] == [2, 0]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_waiting_retry_after_admits(world: World, strategy: Strategy) -> None:
    """A denied request is admitted once its retry_after has passed, not before it is denied."""
    limiter = world.limiter(Limit(2, 0.2, strategy))
    for _ in range(2):
        decisions = await decide_all(limiter, "k", [1] * 3)
        denied = next(d for d in decisions if d.outcome is Outcome.DENIED)
        assert 0 < denied.retry_after <= 0.4
        await world.wait(denied.retry_after)
        admitted = await limiter.decide("k")
        assert admitted.outcome is Outcome.ALLOWED, admitted


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_scaling_changes_the_quota(world: World, strategy: Strategy) -> None:
    """A limiter scaled to half admits half its quota, and the full one again after."""
    limiter = world.limiter(Limit(10, 60, strategy))
    limiter.scale(0.5)
    decisions = await decide_all(limiter, "k", [1] * 6)
    assert [d.outcome for d in decisions] == [Outcome.ALLOWED] * 5 + [Outcome.DENIED]
    assert decisions[0].limit == 5
    limiter.scale(1.0)
    again = await limiter.decide("fresh")
    assert (again.limit, again.remaining) == (10, 9)
    # The key keeps what it spent; at the full rate, counting strategies have room for it
    # (so no cached denial of the scaled limit may answer), a TAT of 5 slots of the halved
    # rate (60 s) leaves no room for one more at 6 s a slot until one has drained.
    after = await limiter.decide("k")
    if strategy in TAT_STRATEGIES:
        assert after.outcome is Outcome.DENIED
        assert 0 < after.retry_after <= 6
    else:
        assert (after.outcome, after.remaining) == (Outcome.ALLOWED, 4)


@pytest.mark.parametrize("strategy", [Strategy.GCRA, Strategy.SLIDING_LOG, Strategy.FIXED_WINDOW])
async def test_concurrent_requests_admit_exactly_the_quota(
    world: World, strategy: Strategy
) -> None:
    """1,000 concurrent tasks on one key: exactly the quota of 50 is admitted."""
    limiter = world.limiter(Limit(50, 3600, strategy))
    decisions = await asyncio.gather(*(limiter.decide("hot") for _ in range(1000)))
    assert sum(d.outcome is Outcome.ALLOWED for d in decisions) == 50
    assert sum(d.outcome is Outcome.DENIED for d in decisions) == 950
    assert limiter.stats().storage_errors == 0


async def test_keys_with_braces_and_separators_stay_apart(world: World) -> None:
    """Keys holding `{`, `}`, `:` and `%` are distinct keys, each with its own quota."""
    limiter = world.limiter(Limit(1, 60))
    keys = ["a", "{a}", "a}", "{", "}", "a:b", "a%7Db", "a}b", "", "é💥", "%"]
    decisions = await asyncio.gather(*(limiter.decide(key) for key in keys))
    assert all(d.outcome is Outcome.ALLOWED for d in decisions)
    again = await asyncio.gather(*(limiter.decide(key) for key in keys))
    assert all(d.outcome is Outcome.DENIED for d in again)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_cost_per_limit(world: World, strategy: Strategy) -> None:
    """One request of 4 tokens: the token limit binds on the third, and nothing is spent."""
    limiter = world.limiter(
        [Limit(3, 60, strategy, name="requests"), Limit(10, 60, OTHER[strategy], name="tokens")]
    )
    spend = {"requests": 1, "tokens": 4}
    decisions = [await limiter.decide("k", spend) for _ in range(3)]
    assert [d.outcome for d in decisions] == [Outcome.ALLOWED] * 2 + [Outcome.DENIED]
    assert decisions[-1].policy == "tokens"
    assert [part.remaining for part in decisions[-1].parts] == [1, 2]
    assert (await limiter.decide("k", {"requests": 1, "tokens": 2})).outcome is Outcome.ALLOWED
    never = await limiter.decide("k", {"requests": 0, "tokens": 11})
    assert never.outcome is Outcome.NEVER
    assert never.policy == "tokens"
