"""The SQLite store's own behaviour: schema versions, a database that cannot be written, and the
flag definitions beside the state (the StateStore behaviour is tests/integration/
test_state_stores.py, run over every backend)."""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.database import Database, SchemaError
from agent.database.schema import FORMAT
from agent.degradation.audit import AuditQuery
from agent.degradation.errors import FlagStoreError, StateError, StoreUnavailableError
from agent.degradation.flags import FlagDefinition, FlagDocument, Flags
from agent.degradation.sqlitestore import SCHEMA, SqliteFlagStore, SqliteStateStore
from tests.harness.binaries import unavailable


def _state(version: int) -> dict[str, Any]:
    return {"version": version, "level": "degraded"}


def _entry(version: int) -> dict[str, Any]:
    return {
        "id": f"e{version}",
        "time": "2026-12-06T23:30:00Z",
        "version": version,
        "actor": {"kind": "user", "id": "ops"},
        "action": "level_pinned",
    }


def _pragma(path: Path, name: str) -> Any:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        db.close()


def _versions(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT name, version FROM schema_versions").fetchall())
    finally:
        db.close()


async def _ids(store: SqliteStateStore) -> list[str]:
    return [e["id"] for e in (await store.history(AuditQuery())).entries]


def _flag(key: str, **fields: Any) -> FlagDefinition:
    return FlagDefinition.model_validate({"key": key, "enabled": True, **fields})


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A database file under tmp_path, its thread stopped at the end."""
    database = Database(tmp_path / "vigil.db", [SCHEMA], busy_timeout_seconds=0.2)
    database.acquire()  # the test's own hold, so that closing its stores does not end it
    yield database
    database.release()


async def test_a_new_database_gets_the_schema_and_durable_settings(database: Database) -> None:
    """Opening a fresh file applies every migration, and the connection runs in WAL mode with
    synchronous FULL, foreign keys on and the busy timeout set."""
    store = SqliteStateStore(database)
    assert await store.load() is None
    settings = database.call(
        lambda db: [
            db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        ]
    )
    assert settings == ["wal", 2, 1, 200]  # synchronous 2 is FULL
    assert _pragma(database.path, "user_version") == FORMAT
    assert _versions(database.path) == {"degradation": SCHEMA.version}
    await store.close()


async def test_a_database_at_user_version_0_is_migrated(tmp_path: Path) -> None:
    """An existing database that no migration has touched (user_version 0) gets the tables,
    keeps what else it holds, and records the file format and the degradation schema version."""
    path = tmp_path / "vigil.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE other (x INTEGER)")
    db.execute("INSERT INTO other VALUES (7)")
    db.commit()
    db.close()
    assert _pragma(path, "user_version") == 0

    store = SqliteStateStore.at(path)
    await store.commit(0, _state(1), [_entry(1)])
    await store.close()

    assert _pragma(path, "user_version") == FORMAT
    assert _versions(path) == {"degradation": SCHEMA.version}
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"state", "audit", "flags", "other"} <= tables
    assert db.execute("SELECT x FROM other").fetchall() == [(7,)]
    assert db.execute("SELECT version, actor_kind, actor_id, action FROM audit").fetchall() == [
        (1, "user", "ops", "level_pinned")
    ]
    db.close()


async def test_a_database_of_the_first_sqlite_release_is_migrated(tmp_path: Path) -> None:
    """A database written by the first SQLite store (format 1: the degradation tables, their
    version in user_version) keeps its state and audit and gets per-capability versions."""
    path = tmp_path / "vigil.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in SCHEMA.migrations[0]:
        db.execute(statement)
    db.execute('INSERT INTO state VALUES (1, 4, \'{"version": 4, "level": "minimal"}\')')
    db.execute(
        "INSERT INTO audit (time, version, actor_kind, actor_id, action, entry)"
        " VALUES ('t', 4, 'user', 'ops', 'pin_set', '{\"id\": \"e4\"}')"
    )
    db.execute("PRAGMA user_version = 1")
    db.close()

    store = SqliteStateStore.at(path)
    assert await store.load() == {"version": 4, "level": "minimal"}
    assert await _ids(store) == ["e4"]
    await store.close()
    assert _pragma(path, "user_version") == FORMAT
    assert _versions(path) == {"degradation": SCHEMA.version}


@pytest.mark.parametrize("newer", ["format", "schema"])
async def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path, newer: str) -> None:
    """A database whose file format, or whose degradation schema, is newer than the code
    knows raises SchemaError naming both versions, and is not changed; the store reports it
    as a StateError."""
    path = tmp_path / "vigil.db"
    made = Database(path, [SCHEMA])
    made.call(lambda db: None)  # creates it at the current versions
    made.release()
    db = sqlite3.connect(path, isolation_level=None)
    if newer == "format":
        db.execute(f"PRAGMA user_version = {FORMAT + 1}")
        found, known = FORMAT + 1, FORMAT
    else:
        db.execute("UPDATE schema_versions SET version = version + 1")
        found, known = SCHEMA.version + 1, SCHEMA.version
    db.close()
    before = path.read_bytes()

    database = Database(path, [SCHEMA])
    with pytest.raises(SchemaError) as caught:
        await database.open()
    message = str(caught.value)
    assert f" {found} is newer than this agent knows ({known})" in message
    assert str(path) in message
    store = SqliteStateStore(database)
    with pytest.raises(StateError, match="newer than this agent knows"):
        await store.load()
    await store.close()
    assert path.read_bytes() == before


async def test_a_file_that_is_not_a_database_is_a_state_error(tmp_path: Path) -> None:
    """A database file holding something else stops the agent (StateError); it is left as is."""
    path = tmp_path / "vigil.db"
    path.write_bytes(b"not a database, but a file an operator may want back\n" * 100)
    store = SqliteStateStore.at(path)
    with pytest.raises(StateError):
        await store.load()
    await store.close()
    assert path.read_bytes().startswith(b"not a database")


async def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    """A database path that cannot be opened (a directory stands there) raises
    StoreUnavailableError; the store works once the cause is gone."""
    path = tmp_path / "vigil.db"
    path.mkdir()
    store = SqliteStateStore.at(path)
    with pytest.raises(StoreUnavailableError):
        await store.load()
    with pytest.raises(StoreUnavailableError):
        await store.commit(0, _state(1), [_entry(1)])
    path.rmdir()
    await store.commit(0, _state(1), [_entry(1)])
    assert await store.load() == _state(1)
    await store.close()


READ_ONLY_PROBE = """
import asyncio, sys
from pathlib import Path
from agent.degradation.sqlitestore import SqliteStateStore

async def main() -> None:
    store = SqliteStateStore.at(Path(sys.argv[1]))
    try:
        await store.commit(1, {"version": 2}, [])
    except Exception as exc:
        print(type(exc).__name__)
    else:
        print("stored")
    await store.close()

asyncio.run(main())
"""


def _commit_in_read_only(directory: Path) -> str:
    """What a commit to `directory`/vigil.db raises in a process that cannot write there: as
    root, inside a private mount namespace where the directory is a read-only bind mount."""
    probe = [sys.executable, "-c", READ_ONLY_PROBE, str(directory / "vigil.db")]
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            return subprocess.run(probe, capture_output=True, text=True, check=True).stdout
        finally:
            directory.chmod(0o755)
    if shutil.which("unshare") is None:
        unavailable("root needs unshare(1) to make a read-only directory")
    where = shlex.quote(str(directory))
    script = f"mount --bind {where} {where} && mount -o remount,ro,bind {where} && " + " ".join(
        shlex.quote(arg) for arg in probe
    )
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    if "mount" in done.stderr and done.returncode != 0:
        unavailable(f"no private read-only mount here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_database_in_a_read_only_directory_is_unavailable(tmp_path: Path) -> None:
    """A commit to a database whose directory cannot be written (no WAL file can be made)
    raises StoreUnavailableError in the process that tries, instead of crashing it."""
    directory = tmp_path / "ro"
    store = SqliteStateStore.at(directory / "vigil.db")
    await store.commit(0, _state(1), [_entry(1)])
    await store.close()
    assert _commit_in_read_only(directory).strip() == "StoreUnavailableError"
    store = SqliteStateStore.at(directory / "vigil.db")
    assert await store.load() == _state(1)  # and nothing changed
    await store.close()


async def test_a_full_disk_refuses_the_commit_and_stores_none_of_it(database: Database) -> None:
    """A commit that cannot be written (the file size limit stands in for a full disk) raises
    StoreUnavailableError, stores neither its state nor its audit, and the store goes on."""
    store = SqliteStateStore(database)
    await store.commit(0, _state(1), [_entry(1)])
    big = {"version": 2, "padding": "x" * 4_000_000}
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, hard))
    try:
        with pytest.raises(StoreUnavailableError):
            await store.commit(1, big, [_entry(2)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert await store.load() == _state(1)
    assert await _ids(store) == ["e1"]
    await store.commit(1, _state(2), [_entry(2)])
    assert await store.load() == _state(2)
    await store.close()


async def test_a_database_locked_past_the_busy_timeout_is_unavailable(database: Database) -> None:
    """While another connection holds the write lock longer than the busy timeout, a commit
    raises StoreUnavailableError and stores nothing; once the lock is gone it goes through."""
    store = SqliteStateStore(database)
    await store.commit(0, _state(1), [_entry(1)])
    other = sqlite3.connect(database.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailableError, match="locked"):
            await store.commit(1, _state(2), [_entry(2)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await store.load() == _state(1)
    await store.commit(1, _state(2), [_entry(2)])
    assert await _ids(store) == ["e2", "e1"]
    await store.close()


async def test_flags_round_trip_beside_the_state(tmp_path: Path) -> None:
    """Flag definitions saved through the flag store load back equal, from the same database
    file as the state, after the database is closed and opened again."""
    path = tmp_path / "vigil.db"
    database = Database(path, [SCHEMA])
    state, flag_store = SqliteStateStore(database), SqliteFlagStore(database)
    assert await flag_store.load() == FlagDocument()
    definitions = (
        _flag("search", rollout_percent=25, stickiness="user_id"),
        _flag("recommendations", disabled_at_level="degraded"),
    )
    await flag_store.save(FlagDocument(definitions))
    await state.commit(0, _state(1), [_entry(1)])
    await flag_store.close()
    await state.close()

    database = Database(path, [SCHEMA])
    state, flag_store = SqliteStateStore(database), SqliteFlagStore(database)
    assert await flag_store.load() == FlagDocument(definitions)
    assert await state.load() == _state(1)
    flags = await Flags.open(flag_store)
    await flags.replace(definitions[:1])
    assert await flag_store.load() == FlagDocument(definitions[:1])
    await flags.close()
    await state.close()


async def test_flags_that_do_not_load_are_not_overwritten(database: Database) -> None:
    """A stored flag document that does not load is reported (FlagStoreError naming the
    database) and a save refuses to replace it, so the operator can repair it."""
    store = SqliteFlagStore(database)
    await store.save(FlagDocument((_flag("search"),)))
    await database.run(lambda db: db.execute("UPDATE flags SET document = '{\"version\": 99}'"))
    with pytest.raises(FlagStoreError, match=str(database.path)):
        await store.load()
    with pytest.raises(FlagStoreError, match="refusing to overwrite"):
        await store.save(FlagDocument((_flag("other"),)))
    stored = database.call(lambda db: db.execute("SELECT document FROM flags").fetchone()[0])
    assert stored == '{"version": 99}'
    await store.close()
