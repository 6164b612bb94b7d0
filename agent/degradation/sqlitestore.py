"""The degradation state, its audit trail and the flag definitions in the agent's SQLite database.

A commit is one transaction (`BEGIN IMMEDIATE` ... `COMMIT`): the compare-and-set on the state's
version, the new state row and the commit's audit rows. The webhook's 2xx waits for it, and with
`synchronous = FULL` in WAL mode (see `database.py`) a returned COMMIT is on disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson

from agent.database import (
    Database,
    DatabaseError,
    DatabaseUnavailableError,
    Schema,
    transaction,
)
from agent.degradation.audit import AuditPage, AuditQuery
from agent.degradation.errors import (
    ConflictError,
    FlagStoreError,
    QueryError,
    StateError,
    StoreUnavailableError,
)
from agent.degradation.flags import FlagDocument
from agent.degradation.flagstore import parse_document, render_document

T = TypeVar("T")

SCHEMA = Schema(
    "degradation",
    (
        # 1: the state (one row), its audit trail and the flag definitions (one row).
        (
            """CREATE TABLE state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                version INTEGER NOT NULL,
                document TEXT NOT NULL
            )""",
            """CREATE TABLE audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time TEXT NOT NULL,
                version INTEGER NOT NULL,
                actor_kind TEXT NOT NULL,
                actor_id TEXT NOT NULL,
                action TEXT NOT NULL,
                entry TEXT NOT NULL
            )""",
            "CREATE INDEX audit_time ON audit (time)",
            "CREATE INDEX audit_action ON audit (action)",
            """CREATE TABLE flags (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                document TEXT NOT NULL
            )""",
        ),
    ),
)
"""The degradation tables; `agent.database` migrates them when the database opens."""

AuditRow = tuple[str, int, str, str, str, str]
"""time, version, actor kind, actor id, action, the entry as JSON."""


class SqliteStateStore:
    """The StateStore protocol over the `state` and `audit` tables."""

    shared = False  # one agent owns the database (its owner lock)

    def __init__(self, database: Database) -> None:
        self.database = database
        database.acquire()
        self._closed = False

    @classmethod
    def at(cls, path: Path) -> SqliteStateStore:
        """A store over its own Database at `path`."""
        return cls(Database(path, [SCHEMA]))

    async def load(self) -> dict[str, Any] | None:
        """The stored state document, or None before the first commit."""
        row = await self._run(read_state)
        return None if row is None else state_document(row, f"{self.database.path}: stored state")

    async def commit(
        self, expected_version: int, state: dict[str, Any], audit: Sequence[dict[str, Any]]
    ) -> None:
        """Store `state` and append `audit` in one transaction if the version is unchanged."""
        document = dump_json(state)
        rows = [audit_row(entry) for entry in audit]
        version = int(state["version"])

        def work(db: sqlite3.Connection) -> None:
            _write_state(db, expected_version, version, document, rows)

        await self._run(work)

    async def history(self, query: AuditQuery) -> AuditPage:
        """The audit entries `query` selects, newest first, a page at a time."""
        where, params = _where(query)
        # `where` holds fixed clauses and placeholders only; the values are parameters.
        sql = f"SELECT id, entry FROM audit {where} ORDER BY id DESC LIMIT ?"  # noqa: S608

        def work(db: sqlite3.Connection) -> list[tuple[int, str]]:
            return [(int(i), str(e)) for i, e in db.execute(sql, (*params, query.limit + 1))]

        rows = await self._run(work)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return AuditPage(
            [json.loads(entry) for _, entry in rows], str(rows[-1][0]) if more else None
        )

    async def listen(self, on_change: Callable[[], Awaitable[object]]) -> None:
        """Nothing to listen to: no other agent writes this database."""

    async def close(self) -> None:
        """Release the database (closed with its last user)."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self.database.release)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` on the database thread, with the database's errors as the store's: what
        cannot be read or written now is unavailable (503, retried); a database that cannot be
        used at all (not a database, a newer schema) is a StateError."""
        try:
            return await self.database.run(work)
        except DatabaseUnavailableError as exc:
            raise StoreUnavailableError(str(exc)) from exc
        except DatabaseError as exc:
            raise StateError(str(exc)) from exc


class SqliteFlagStore:
    """Flag definitions as one document in the `flags` table."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.acquire()
        self._closed = False
        self.name = f"flags in {database.path}"

    async def load(self) -> FlagDocument:
        """The stored definitions and segments; none before the first write."""
        raw = await self._run(read_flags, "read")
        return FlagDocument() if raw is None else parse_document(raw, self.name)

    async def save(self, flags: FlagDocument) -> None:
        """Replace the stored definitions and segments; refuses to overwrite a document that
        does not load."""
        document = render_document(flags).decode()

        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                old = read_flags(db)
                if old is not None:
                    try:
                        parse_document(old, self.name)
                    except FlagStoreError as exc:
                        msg = f"refusing to overwrite flags that do not load: {exc}"
                        raise FlagStoreError(msg) from None
                write_flags(db, document)

        await self._run(work, "write")

    async def close(self) -> None:
        """Release the database (closed with its last user)."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self.database.release)

    async def _run(self, work: Callable[[sqlite3.Connection], T], doing: str) -> T:
        try:
            return await self.database.run(work)
        except DatabaseError as exc:
            raise FlagStoreError(f"{self.name}: cannot {doing}: {exc}") from exc


def read_state(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT document FROM state WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def state_document(raw: str | bytes, where: str) -> dict[str, Any]:
    """A stored state document; StateError naming `where` when it is not one."""
    try:
        state = json.loads(raw)
    except ValueError as exc:
        raise StateError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(state, dict) or not isinstance(state.get("version"), int):
        raise StateError(f"{where}: not a Vigil degradation state document")
    return state


def read_flags(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT document FROM flags WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def write_flags(db: sqlite3.Connection, document: str) -> None:
    db.execute(
        "INSERT INTO flags (id, document) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET document = excluded.document",
        (document,),
    )


def _write_state(
    db: sqlite3.Connection, expected: int, version: int, document: str, rows: list[AuditRow]
) -> None:
    """The compare-and-set, the state and its audit rows: one transaction."""
    with transaction(db):
        row = db.execute("SELECT version FROM state WHERE id = 1").fetchone()
        stored = 0 if row is None else int(row[0])
        if stored != expected:
            raise ConflictError(f"state is at version {stored}, not {expected}")
        write_state(db, version, document, rows)


def write_state(db: sqlite3.Connection, version: int, document: str, rows: list[AuditRow]) -> None:
    """The state row and audit rows, inside the caller's transaction."""
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


def audit_row(entry: dict[str, Any]) -> AuditRow:
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
        dump_json(entry),
    )


def _where(query: AuditQuery) -> tuple[str, list[object]]:
    """The WHERE clause (and its parameters) of `query`; a cursor is the last row id seen."""
    clauses: list[str] = []
    params: list[object] = []
    if query.cursor is not None:
        clauses.append("id < ?")
        params.append(_row_id(query.cursor))
    if query.since is not None:
        clauses.append("time >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("time < ?")
        params.append(query.until)
    if query.kinds:
        clauses.append(f"action IN ({', '.join('?' * len(query.kinds))})")
        params.extend(query.kinds)
    pair = query.actor_pair()
    if pair is not None:
        clauses.append("actor_kind = ? AND actor_id = ?")
        params.extend(pair)
    elif query.actor is not None:
        clauses.append("(actor_id = ? OR actor_kind = ?)")
        params.extend((query.actor, query.actor))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _row_id(cursor: str) -> int:
    """The audit row id a cursor of this store holds; QueryError for any other text."""
    if not (cursor.isascii() and cursor.isdigit() and int(cursor) < 2**63):
        raise QueryError(f"not a cursor of this audit trail: {cursor[:40]!r}")
    return int(cursor)


def dump_json(document: Mapping[str, Any]) -> str:
    """`document` as compact JSON text, as the tables store it."""
    try:
        return orjson.dumps(document, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson refuses (ints past 64 bits, lone surrogates): the stdlib
        return json.dumps(document, separators=(",", ":"), default=str)
