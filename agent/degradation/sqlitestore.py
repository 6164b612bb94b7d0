"""The degradation state, its audit trail and the flag definitions in the agent's SQLite database.

A commit is one transaction (`BEGIN IMMEDIATE` ... `COMMIT`): the compare-and-set on the state's
version, the new state row and the commit's audit rows. The webhook's 2xx waits for it, and with
`synchronous = FULL` in WAL mode (see `database.py`) a returned COMMIT is on disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agent.degradation.database import Database, transaction
from agent.degradation.errors import (
    ConflictError,
    FlagStoreError,
    StateError,
    StoreUnavailableError,
)
from agent.degradation.flags import FlagDefinition
from agent.degradation.flagstore import parse_document, render_document
from agent.degradation.storage import dump_line

T = TypeVar("T")

AuditRow = tuple[str, int, str, str, str, str]
"""time, version, actor kind, actor id, action, the entry as JSON."""


class SqliteStateStore:
    """The StateStore protocol over the `state` and `audit` tables."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.acquire()
        self._closed = False

    @classmethod
    def at(cls, path: Path) -> SqliteStateStore:
        """A store over its own Database at `path`."""
        return cls(Database(path))

    async def load(self) -> dict[str, Any] | None:
        """The stored state document, or None before the first commit."""
        row = await self.database.run(_guarded(self.database.path, _read_state))
        if row is None:
            return None
        try:
            state = json.loads(row)
        except ValueError as exc:
            raise StateError(f"{self.database.path}: stored state is not JSON: {exc}") from None
        if not isinstance(state, dict) or not isinstance(state.get("version"), int):
            raise StateError(f"{self.database.path}: stored state is not a state document")
        return state

    async def commit(
        self, expected_version: int, state: dict[str, Any], audit: Sequence[dict[str, Any]]
    ) -> None:
        """Store `state` and append `audit` in one transaction if the version is unchanged."""
        document = dump_line(state).decode()
        rows = [_audit_row(entry) for entry in audit]
        version = int(state["version"])

        def work(db: sqlite3.Connection) -> None:
            _write_state(db, expected_version, version, document, rows)

        await self.database.run(_guarded(self.database.path, work))

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` audit entries, oldest first."""
        if limit <= 0:
            return []

        def work(db: sqlite3.Connection) -> list[str]:
            cursor = db.execute("SELECT entry FROM audit ORDER BY id DESC LIMIT ?", (limit,))
            return [str(row[0]) for row in cursor]

        entries = await self.database.run(_guarded(self.database.path, work))
        return [json.loads(entry) for entry in reversed(entries)]

    async def close(self) -> None:
        """Release the database (closed with its last user)."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self.database.release)


class SqliteFlagStore:
    """Flag definitions as one document in the `flags` table.

    Synchronous, as the FlagStore protocol is (the `Flags` writer runs in a thread): each call
    waits for the database thread.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        database.acquire()
        self._closed = False
        self.name = f"flags in {database.path}"

    def load(self) -> list[FlagDefinition]:
        """The stored definitions; none before the first write (nor any database file)."""
        if not self.database.path.exists():
            return []  # reading must not create the database: the agent may not be running yet
        raw = self._call(_read_flags, "read")
        return [] if raw is None else parse_document(raw, self.name)

    def save(self, definitions: Iterable[FlagDefinition]) -> None:
        """Replace the stored definitions; refuses to overwrite a document that does not load."""
        document = render_document(definitions).decode()

        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                old = _read_flags(db)
                if old is not None:
                    try:
                        parse_document(old, self.name)
                    except FlagStoreError as exc:
                        msg = f"refusing to overwrite flags that do not load: {exc}"
                        raise FlagStoreError(msg) from None
                db.execute(
                    "INSERT INTO flags (id, document) VALUES (1, ?)"
                    " ON CONFLICT (id) DO UPDATE SET document = excluded.document",
                    (document,),
                )

        self._call(work, "write")

    def close(self) -> None:
        """Release the database (closed with its last user)."""
        if not self._closed:
            self._closed = True
            self.database.release()

    def _call(self, work: Callable[[sqlite3.Connection], T], doing: str) -> T:
        try:
            return self.database.call(work)
        except (sqlite3.Error, StoreUnavailableError, StateError) as exc:
            raise FlagStoreError(f"{self.name}: cannot {doing}: {exc}") from exc


def _read_state(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT document FROM state WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def _read_flags(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT document FROM flags WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def _write_state(
    db: sqlite3.Connection, expected: int, version: int, document: str, rows: list[AuditRow]
) -> None:
    """The compare-and-set, the state and its audit rows: one transaction."""
    with transaction(db):
        row = db.execute("SELECT version FROM state WHERE id = 1").fetchone()
        stored = 0 if row is None else int(row[0])
        if stored != expected:
            raise ConflictError(f"state is at version {stored}, not {expected}")
        db.execute(
            "INSERT INTO state (id, version, document) VALUES (1, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version,"
            " document = excluded.document",
            (version, document),
        )
        db.executemany(
            "INSERT INTO audit (time, version, actor_kind, actor_id, action, entry)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def _audit_row(entry: dict[str, Any]) -> AuditRow:
    actor = entry.get("actor")
    kind, actor_id = ("", "")
    if isinstance(actor, dict):
        kind, actor_id = str(actor.get("kind", "")), str(actor.get("id", ""))
    return (
        str(entry.get("time", "")),
        int(entry.get("version", 0)),
        kind,
        actor_id,
        str(entry.get("action", "")),
        dump_line(entry).decode(),
    )


def _guarded(
    path: Path, work: Callable[[sqlite3.Connection], T]
) -> Callable[[sqlite3.Connection], T]:
    """`work` with SQLite's errors as the store's: a database that cannot be read or written
    now (locked past the busy timeout, disk full, read-only, I/O error) is unavailable; one
    that is not a database at all is a StateError."""

    def guarded(db: sqlite3.Connection) -> T:
        try:
            return work(db)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"{path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: {exc}") from exc

    return guarded
