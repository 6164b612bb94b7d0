"""The StateStore interface, one behavioural suite run over every backend: files, SQLite, Redis.

Each test opens stores through a factory: a second store from the same factory is the same
durable place (the same files, the same database file, the same Redis keys), so reopening
after `close` shows what survives a restart.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config.model import RedisStoreSettings
from agent.degradation.engine import StateStore
from agent.degradation.errors import ConflictError
from agent.degradation.filestore import FileStateStore
from agent.degradation.redisstore import RedisStateStore
from agent.degradation.sqlitestore import SqliteStateStore
from tests.harness.redis import RedisServer

pytestmark = pytest.mark.integration

BACKENDS = ["file", "sqlite", "redis"]


class Stores:
    """Opens stores of one backend over one place; closes every one it opened."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self.opened: list[Any] = []

    def open(self) -> StateStore:
        """A new store over the same place."""
        store = self._make()
        self.opened.append(store)
        return store  # type: ignore[no-any-return]

    async def close(self, store: StateStore) -> None:
        """Close `store` (as an agent's stop does)."""
        self.opened.remove(store)
        await store.close()  # type: ignore[attr-defined]

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()
        self.opened.clear()


@pytest.fixture(params=BACKENDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """A store factory for each backend, over a fresh place."""
    prefix = f"vigil-stores-{uuid.uuid4().hex[:12]}"
    server: RedisServer | None = None
    if request.param == "file":
        made = Stores(
            lambda: FileStateStore(tmp_path / "degradation.json", tmp_path / "audit.jsonl")
        )
    elif request.param == "sqlite":
        made = Stores(lambda: SqliteStateStore.at(tmp_path / "vigil.db"))
    else:
        server = request.getfixturevalue("redis_server")
        settings = RedisStoreSettings(url=server.url(), key_prefix=prefix)
        made = Stores(lambda: RedisStateStore(settings))
    try:
        yield made
    finally:
        await made.close_all()
        if server is not None:
            with server.client() as client:
                client.delete(f"{prefix}:state", f"{prefix}:audit")


def _state(version: int, level: str = "degraded") -> dict[str, Any]:
    return {"version": version, "level": level, "alerts": {}, "pin": None}


def _entry(version: int, n: int = 0) -> dict[str, Any]:
    return {
        "id": f"e{version}.{n}",
        "time": f"2026-12-06T23:{version // 60:02d}:{version % 60:02d}Z",
        "version": version,
        "actor": {"kind": "alertmanager", "id": "suite"},
        "action": "level_changed" if n == 0 else "alert_fired",
    }


async def _commit(store: StateStore, version: int, entries: int = 1) -> None:
    await store.commit(version - 1, _state(version), [_entry(version, n) for n in range(entries)])


async def test_an_empty_store_has_no_state_and_no_audit(stores: Stores) -> None:
    """Before the first commit, load answers None and the audit trail is empty."""
    store = stores.open()
    assert await store.load() is None
    assert await store.audit(10) == []


async def test_a_commit_is_what_load_returns(stores: Stores) -> None:
    """load returns the last committed document as it was given."""
    store = stores.open()
    await store.load()
    await _commit(store, 1)
    await store.commit(1, _state(2, "minimal"), [_entry(2)])
    assert await store.load() == _state(2, "minimal")


async def test_a_commit_over_another_version_conflicts_and_stores_nothing(stores: Stores) -> None:
    """A commit whose expected version is not the stored one raises ConflictError, and neither
    its state nor its audit entries are stored."""
    store = stores.open()
    await store.load()
    await _commit(store, 1)
    with pytest.raises(ConflictError):
        await store.commit(0, _state(2, "maintenance"), [_entry(2)])
    with pytest.raises(ConflictError):
        await store.commit(5, _state(6, "maintenance"), [_entry(6)])
    assert await store.load() == _state(1)
    assert [e["id"] for e in await store.audit(10)] == ["e1.0"]
    await _commit(store, 2)  # the right version still goes through
    assert await store.load() == _state(2)


async def test_racing_commits_on_one_version_store_exactly_one(stores: Stores) -> None:
    """Of several commits expecting the same version at once, one stores; the rest conflict."""
    store = stores.open()
    await store.load()
    await _commit(store, 1)
    results = await asyncio.gather(
        *(store.commit(1, _state(2, f"l{i}"), [_entry(2, i)]) for i in range(5)),
        return_exceptions=True,
    )
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert all(isinstance(r, ConflictError) for r in results if r is not None)
    assert await store.load() == _state(2, f"l{winners[0]}")
    assert [e["id"] for e in await store.audit(10)] == ["e1.0", f"e2.{winners[0]}"]


async def test_audit_is_the_newest_entries_oldest_first(stores: Stores) -> None:
    """audit(limit) returns the newest `limit` entries in commit order, the entries of one
    commit in the order given; a limit of 0 returns none."""
    store = stores.open()
    await store.load()
    for version in range(1, 6):
        await _commit(store, version, entries=2)
    every = [f"e{v}.{n}" for v in range(1, 6) for n in range(2)]
    assert [e["id"] for e in await store.audit(100)] == every
    assert [e["id"] for e in await store.audit(3)] == every[-3:]
    assert await store.audit(0) == []
    assert (await store.audit(1))[0] == _entry(5, 1)  # entries come back as they were given


async def test_state_and_audit_survive_close_and_reopen(stores: Stores) -> None:
    """After close, a new store over the same place loads the last state and the whole audit."""
    store = stores.open()
    await store.load()
    for version in range(1, 4):
        await _commit(store, version)
    await stores.close(store)

    reopened = stores.open()
    assert await reopened.load() == _state(3)
    assert [e["id"] for e in await reopened.audit(10)] == ["e1.0", "e2.0", "e3.0"]
    await _commit(reopened, 4)  # and it goes on from the stored version
    with pytest.raises(ConflictError):
        await _commit(reopened, 4)
    assert (await reopened.load() or {})["version"] == 4
