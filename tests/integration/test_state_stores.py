"""The StateStore interface, one behavioural suite run over every backend: SQLite and Redis.

Each test opens stores through a factory: a second store from the same factory is the same
durable place (the same database file, the same Redis keys), so reopening after `close` shows
what survives a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config.model import RedisStoreSettings
from agent.degradation.audit import AuditQuery
from agent.degradation.errors import ConflictError, QueryError
from agent.degradation.redisstore import RedisStateStore
from agent.degradation.sqlitestore import SqliteStateStore
from agent.degradation.store import StateStore
from tests.harness.redis import RedisServer

pytestmark = pytest.mark.integration

BACKENDS = ["sqlite", "redis"]


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
    if request.param == "sqlite":
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
        "time": f"2026-12-06T23:{version // 60:02d}:{version % 60:02d}.000+00:00",
        "version": version,
        "actor": {"kind": "alertmanager", "id": "suite"},
        "action": "level_changed" if n == 0 else "alert_fired",
    }


async def _ids(store: StateStore, **query: Any) -> list[str]:
    """The ids of one page of `store.history`, newest first."""
    page = await store.history(AuditQuery(**query))
    return [e["id"] for e in page.entries]


async def _commit(store: StateStore, version: int, entries: int = 1) -> None:
    await store.commit(version - 1, _state(version), [_entry(version, n) for n in range(entries)])


async def test_an_empty_store_has_no_state_and_no_audit(stores: Stores) -> None:
    """Before the first commit, load answers None and the audit trail is empty."""
    store = stores.open()
    assert await store.load() is None
    page = await store.history(AuditQuery())
    assert (page.entries, page.next_cursor) == ([], None)


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
    assert await _ids(store) == ["e1.0"]
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
    assert await _ids(store) == [f"e2.{winners[0]}", "e1.0"]


async def test_history_is_newest_first_in_pages(stores: Stores) -> None:
    """history returns entries newest first, the entries of one commit in the reverse of the
    order given, `limit` at a time; following `next_cursor` visits every entry once and the
    last page has no cursor."""
    store = stores.open()
    await store.load()
    for version in range(1, 6):
        await _commit(store, version, entries=2)
    every = [f"e{v}.{n}" for v in range(5, 0, -1) for n in (1, 0)]
    assert await _ids(store, limit=100) == every
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        page = await store.history(AuditQuery(limit=3, cursor=cursor))
        seen += [e["id"] for e in page.entries]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == every
    assert cursor is None
    first = await store.history(AuditQuery(limit=1))
    assert first.entries == [_entry(5, 1)]  # entries come back as they were given
    exact = await store.history(AuditQuery(limit=10))
    assert exact.next_cursor is None  # a page that ends with the oldest entry has no cursor


async def test_history_filters_by_time_actor_and_kind(stores: Stores) -> None:
    """since is inclusive and until exclusive; an actor matches by id, by kind or as kind:id;
    kinds select actions; the filters combine, and pages of a filtered query hold only
    matching entries."""
    store = stores.open()
    await store.load()
    for version in range(1, 7):
        entries = [_entry(version, n) for n in range(2)]
        if version % 2 == 0:
            for e in entries:
                e["actor"] = {"kind": "user", "id": "alice"}
        await store.commit(version - 1, _state(version), entries)
    at = _entry  # times: 23:00:01 ... 23:00:06
    assert await _ids(store, since=at(5)["time"]) == ["e6.1", "e6.0", "e5.1", "e5.0"]
    assert await _ids(store, until=at(2)["time"]) == ["e1.1", "e1.0"]
    window = await _ids(store, since=at(3)["time"], until=at(5)["time"])
    assert window == ["e4.1", "e4.0", "e3.1", "e3.0"]
    assert await _ids(store, actor="alice") == [f"e{v}.{n}" for v in (6, 4, 2) for n in (1, 0)]
    assert await _ids(store, actor="user") == await _ids(store, actor="alice")
    assert await _ids(store, actor="user:alice") == await _ids(store, actor="alice")
    assert await _ids(store, actor="alertmanager:alice") == []
    assert await _ids(store, actor="suite", kinds=("level_changed",)) == ["e5.0", "e3.0", "e1.0"]
    both = await _ids(store, kinds=("level_changed", "alert_fired"), since=at(6)["time"])
    assert both == ["e6.1", "e6.0"]
    pages: list[str] = []
    cursor = None
    while True:
        page = await store.history(AuditQuery(limit=2, actor="alice", cursor=cursor))
        pages += [e["id"] for e in page.entries]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == await _ids(store, actor="alice")


async def test_a_cursor_the_store_never_gave_is_refused(stores: Stores) -> None:
    """A cursor in another form than the store's own raises QueryError and reads nothing."""
    store = stores.open()
    await store.load()
    await _commit(store, 1)
    for cursor in ("abc", "-1", "99999999999999999999999", "1-2-3", " 7"):
        with pytest.raises(QueryError):
            await store.history(AuditQuery(cursor=cursor))


async def test_state_and_audit_survive_close_and_reopen(stores: Stores) -> None:
    """After close, a new store over the same place loads the last state and the whole audit."""
    store = stores.open()
    await store.load()
    for version in range(1, 4):
        await _commit(store, version)
    await stores.close(store)

    reopened = stores.open()
    assert await reopened.load() == _state(3)
    assert await _ids(reopened) == ["e3.0", "e2.0", "e1.0"]
    await _commit(reopened, 4)  # and it goes on from the stored version
    with pytest.raises(ConflictError):
        await _commit(reopened, 4)
    assert (await reopened.load() or {})["version"] == 4


async def test_a_redis_page_scans_a_bounded_part_of_the_stream(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis history page reads at most SCAN_ENTRIES stream entries: a narrow filter gets a
    short page with a cursor, and following the cursors finds every match once."""
    monkeypatch.setattr("agent.degradation.redisstore.SCAN_ENTRIES", 5)
    monkeypatch.setattr("agent.degradation.redisstore.SCAN_BATCH", 2)
    prefix = f"vigil-scan-{uuid.uuid4().hex[:12]}"
    store = RedisStateStore(RedisStoreSettings(url=redis_server.url(), key_prefix=prefix))
    try:
        for version in range(1, 13):
            await _commit(store, version)  # one entry each, actions all level_changed
        wanted = AuditQuery(limit=3, kinds=("level_changed",), since=_entry(11)["time"])
        first = await store.history(wanted)
        assert [e["id"] for e in first.entries] == ["e12.0", "e11.0"]
        assert first.next_cursor is not None  # 5 scanned, the rest not looked at yet
        rest = await store.history(dataclasses.replace(wanted, cursor=first.next_cursor))
        seen = [e["id"] for e in rest.entries]
        cursor = rest.next_cursor
        while cursor is not None:
            page = await store.history(dataclasses.replace(wanted, cursor=cursor))
            seen += [e["id"] for e in page.entries]
            cursor = page.next_cursor
        assert seen == []  # nothing older matches, and the scan ends
    finally:
        with redis_server.client() as client:
            client.delete(f"{prefix}:state", f"{prefix}:audit")
        await store.close()
