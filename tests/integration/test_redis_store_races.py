"""Writers racing on the degradation state shared in a real Redis, and the pub/sub wake-up.

The store's compare-and-set (`lua/commit.lua`) lets exactly one writer win each version; the
engine that loses reloads and applies its change again, so no change and no audit entry is
lost or doubled. A change one engine stores reaches another through the pub/sub hint long
before that engine's next poll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis as redis_py
import redis.asyncio as aioredis

from agent.config.model import DegradationSettings, RedisStoreSettings
from agent.degradation.alerts import WebhookAlert, WebhookPayload
from agent.degradation.audit import MAX_LIMIT, Actor, AuditQuery
from agent.degradation.engine import DegradationEngine
from agent.degradation.errors import ConflictError
from agent.degradation.levels import Level
from agent.degradation.redisstore import RedisStateStore
from tests.harness.redis import RedisServer
from tests.harness.wait import poll_until

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0  # the injected clock's time: nothing here depends on time passing
STARTS = dt.datetime.fromtimestamp(T0 - 60, dt.UTC)
ALERTMANAGER = Actor("alertmanager", "race")
# Longer than any test here runs: only the pub/sub hint can bring another engine's change.
NEVER = 60.0


def _redis_settings(server: RedisServer, prefix: str, **extra: Any) -> RedisStoreSettings:
    return RedisStoreSettings(url=server.url(), key_prefix=prefix, **extra)


def _settings(store: RedisStoreSettings, tick_seconds: float = NEVER) -> DegradationSettings:
    return DegradationSettings.model_validate(
        {
            "enabled": True,
            "store": "redis",
            "redis": store.model_dump(),
            "webhook": {"bearer_token_env": "VIGIL_RACE_HOOK"},
            "hold_seconds": 300,
            "tick_seconds": tick_seconds,
            "rules": [{"name": "race", "matchers": ['alertname=~"Race.*"'], "level": "degraded"}],
        }
    )


def _firing(*names: str) -> WebhookPayload:
    """One notification with `names` firing; each name is its own fingerprint."""
    alerts = [
        WebhookAlert(
            status="firing",
            labels={"alertname": name, "severity": "critical"},
            startsAt=STARTS,
            fingerprint=f"fp-{name}",
        )
        for name in names
    ]
    return WebhookPayload(version="4", status="firing", alerts=alerts)


class _Engines:
    """Starts engines (and stores) over one Redis key prefix; stops them all at the end."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.prefix = f"vigil-race-{uuid.uuid4().hex[:12]}"
        self._engines: list[DegradationEngine] = []
        self._stores: list[RedisStateStore] = []

    def store(self, **extra: Any) -> RedisStateStore:
        """A store of its own (its own connections) over the shared keys."""
        store = RedisStateStore(_redis_settings(self.server, self.prefix, **extra))
        self._stores.append(store)
        return store

    async def engine(self, **extra: Any) -> DegradationEngine:
        """A started engine of its own over the shared keys; `extra` goes to the store."""
        settings = _settings(_redis_settings(self.server, self.prefix, **extra))
        engine = DegradationEngine(settings, RedisStateStore(settings.redis), clock=lambda: T0)
        await engine.start()
        self._engines.append(engine)
        return engine

    async def close(self) -> None:
        for engine in self._engines:
            await engine.stop()
        for store in self._stores:
            await store.close()
        with self.server.client() as client:
            client.delete(*(f"{self.prefix}:{key}" for key in ("state", "audit")))


@pytest.fixture
async def shared(redis_server: RedisServer) -> AsyncIterator[_Engines]:
    """Engines and stores sharing fresh keys in the session's Redis."""
    engines = _Engines(redis_server)
    try:
        yield engines
    finally:
        await engines.close()


async def _audit(store: RedisStateStore) -> list[dict[str, Any]]:
    """The whole audit stream, oldest first (history pages run newest first)."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await store.history(AuditQuery(limit=MAX_LIMIT, cursor=cursor))
        entries += page.entries
        cursor = page.next_cursor
        if cursor is None:
            return entries[::-1]


def _fired(entries: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(fingerprint, version) of every `alert_fired` entry, in stream order."""
    return [(e["fingerprint"], e["version"]) for e in entries if e["action"] == "alert_fired"]


async def test_store_compare_and_set_lets_one_writer_win_each_version(shared: _Engines) -> None:
    """Of writers racing on one version exactly one stores; the others get ConflictError."""
    stores = [shared.store() for _ in range(6)]
    channel = stores[0].channel
    listener = aioredis.Redis.from_url(shared.server.url(), decode_responses=True)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    winners: list[int] = []
    try:
        for version in range(5):
            results = await asyncio.gather(
                *(
                    store.commit(
                        version,
                        {"version": version + 1, "writer": index},
                        [{"writer": index, "version": version + 1}],
                    )
                    for index, store in enumerate(stores)
                ),
                return_exceptions=True,
            )

            stored = [i for i, result in enumerate(results) if result is None]
            refused = [r for r in results if isinstance(r, ConflictError)]
            assert len(stored) == 1, results
            assert len(refused) == len(stores) - 1, results
            assert all(f"at version {version + 1}, not {version}" in str(r) for r in refused)
            winners += stored
            assert await stores[-1].load() == {"version": version + 1, "writer": stored[0]}

        announced: list[str] = []
        deadline = time.monotonic() + 5
        while len(announced) < len(winners) and time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=0.1)
            if message is not None:
                announced.append(message["data"])
    finally:
        await pubsub.aclose()
        await listener.aclose()

    # The audit holds the winners' entries only, one per version; each version announced once.
    assert await _audit(stores[0]) == [
        {"writer": writer, "version": version + 1} for version, writer in enumerate(winners)
    ]
    assert announced == [str(version + 1) for version in range(len(winners))]


async def test_store_refuses_a_stale_version_after_a_newer_write(shared: _Engines) -> None:
    """A writer that read an older version is refused even if it claims a newer one."""
    first, late = shared.store(), shared.store()
    await first.commit(0, {"version": 1, "by": "first"}, [{"by": "first"}])
    await first.commit(1, {"version": 2, "by": "first"}, [{"by": "first"}])

    for expected in (0, 1, 3):
        with pytest.raises(ConflictError, match="at version 2"):
            await late.commit(expected, {"version": expected + 1, "by": "late"}, [{"by": "late"}])

    assert await late.load() == {"version": 2, "by": "first"}
    assert await _audit(late) == [{"by": "first"}, {"by": "first"}]


async def test_losing_engine_reloads_and_reapplies_its_change(
    fresh_redis: Callable[..., RedisServer],
) -> None:
    """Two engines commit on one version at once: both changes land, on consecutive versions."""
    server = await asyncio.to_thread(fresh_redis)
    engines = _Engines(server)
    admin = server.client()
    try:
        a = await engines.engine(timeout_seconds=10)
        b = await engines.engine(timeout_seconds=10)
        await a.receive(_firing("RaceFirst"), ALERTMANAGER, None)
        await b.sync()  # (the pub/sub hint may have brought it already)
        assert (a.state.version, b.state.version) == (1, 1)

        # Hold every write in Redis until both engines have sent theirs over version 1.
        admin.client_pause(10_000, all=False)  # writes (and scripts) only
        try:
            racing = [
                asyncio.create_task(a.receive(_firing("RaceFromA"), ALERTMANAGER, None)),
                asyncio.create_task(b.receive(_firing("RaceFromB"), ALERTMANAGER, None)),
            ]
            await poll_until(
                lambda: _held_scripts(admin, 2), 5, 0.02, "both commits waiting in Redis"
            )
        finally:
            admin.client_unpause()
        steps = await asyncio.gather(*racing)
        await a.sync()
        await b.sync()
        reader = engines.store()
        entries = await _audit(reader)
    finally:
        admin.close()
        await engines.close()

    # One engine won version 2; the other was refused, reloaded and stored version 3.
    assert sorted(step.state.version for step in steps) == [2, 3]
    assert a.state == b.state
    assert a.state.version == 3
    assert sorted(a.state.book.active) == ["fp-RaceFirst", "fp-RaceFromA", "fp-RaceFromB"]
    assert a.level is Level.DEGRADED
    fired = dict(_fired(entries))
    assert fired["fp-RaceFirst"] == 1
    assert sorted([fired["fp-RaceFromA"], fired["fp-RaceFromB"]]) == [2, 3]
    assert len(_fired(entries)) == 3
    assert [(e["action"], e["version"]) for e in entries if e["action"] != "alert_fired"] == [
        ("level_changed", 1)
    ]
    assert len({e["id"] for e in entries}) == len(entries)


def _held_scripts(admin: redis_py.Redis, count: int) -> Awaitable[bool]:
    """Whether `count` clients wait in Redis (CLIENT PAUSE) to run the commit script."""

    async def check() -> bool:
        clients = await asyncio.to_thread(admin.client_list)
        held = [c for c in clients if c.get("cmd") == "evalsha" and "b" in c.get("flags", "")]
        return len(held) >= count

    return check()


@pytest.mark.parametrize("seed", range(5))
async def test_concurrent_writers_on_two_engines_lose_nothing(shared: _Engines, seed: int) -> None:
    """Webhooks raced over two engines all apply, each on its own version with one audit entry."""
    rng = random.Random(seed)
    engines = [await shared.engine(), await shared.engine()]
    names = [f"RaceAlert{i:02d}" for i in range(24)]

    async def send(name: str) -> str | None:
        await asyncio.sleep(rng.random() * 0.02)  # interleave the arrivals (seeded)
        try:
            await rng.choice(engines).receive(_firing(name), ALERTMANAGER, None)
        except ConflictError:  # the engine gave up after its retries
            return None
        return f"fp-{name}"

    results = await asyncio.gather(*(send(name) for name in names))
    applied = sorted(fp for fp in results if fp is not None)
    for engine in engines:
        await engine.sync()
    entries = await _audit(shared.store())

    # Two engines cannot exhaust each other's retries here: a refusal means a lost race.
    assert applied == sorted(f"fp-{name}" for name in names)
    for engine in engines:
        assert engine.state.version == len(applied)
        assert sorted(engine.state.book.active) == applied
    fired = _fired(entries)
    assert sorted(fp for fp, _ in fired) == applied
    assert sorted(version for _, version in fired) == list(range(1, len(applied) + 1))
    assert len({e["id"] for e in entries}) == len(entries)
    assert Counter(e["action"] for e in entries) == Counter(
        {"alert_fired": len(applied), "level_changed": 1}
    )


async def test_pubsub_wakes_another_engine_before_its_poll(shared: _Engines) -> None:
    """A change stored by engine A is adopted by engine B at once, with B's poll a minute away."""
    a = await shared.engine(poll_seconds=NEVER)
    b = await shared.engine(poll_seconds=NEVER)
    seen: list[tuple[int, int]] = []
    b.add_listener(lambda old, new: seen.append((old.version, new.version)))
    channel = shared.store().channel
    with shared.server.client(decode_responses=True) as client:

        async def both_subscribed() -> bool:
            counts = await asyncio.to_thread(client.pubsub_numsub, channel)
            return bool(dict(counts).get(channel, 0) >= 2)

        await poll_until(both_subscribed, 5, 0.02, "both engines subscribing")

    await a.receive(_firing("RaceWake"), ALERTMANAGER, None)

    async def adopted() -> bool:
        return b.state.version == 1

    await poll_until(adopted, 5, 0.02, "engine B adopting engine A's change")
    assert b.level is Level.DEGRADED
    assert sorted(b.state.book.active) == ["fp-RaceWake"]
    assert b.state == a.state
    assert seen == [(0, 1)]


async def test_audit_only_write_behind_another_agent_adopts_and_appends(shared: _Engines) -> None:
    """A flag write's audit entry from an engine one version behind is appended, not refused."""
    ahead = await shared.engine(poll_seconds=NEVER)
    settings = _settings(_redis_settings(shared.server, shared.prefix))
    # Never started: no pub/sub, no tick, so nothing but the conflict can tell it of version 1.
    behind = DegradationEngine(settings, RedisStateStore(settings.redis), clock=lambda: T0)
    try:
        await ahead.receive(_firing("RaceAhead"), ALERTMANAGER, None)

        await behind.record("flag_set", {"flags": ["f"]}, Actor("user", "ops"))

        entries = await _audit(shared.store())
        assert [e["action"] for e in entries] == ["alert_fired", "level_changed", "flag_set"]
        assert entries[-1]["version"] == 2  # the flag write's own version, after ahead's
        await ahead.sync()
        assert behind.state == ahead.state
        assert behind.state.version == 2
    finally:
        await behind.stop()
