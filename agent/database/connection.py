"""`Database`: the agent's SQLite file behind one connection on one dedicated thread, with the
pragmas that make a commit durable and every capability's schema migrated on open."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from agent.database.errors import DatabaseCorruptError, DatabaseUnavailableError
from agent.database.schema import Schema, migrate

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 5.0
"""How long a write waits for another connection's lock before the database is unavailable."""


class Database:
    """One SQLite file, used only from one thread that this object owns.

    A `sqlite3.Connection` belongs to the thread that opened it, and a call into SQLite can block
    (an fsync, a lock held by another process): so every call runs on a single-thread executor,
    awaited from the event loop with `run` and waited for from other threads with `call`. The
    connection opens on first use (or `open`), and opens again after a failed open, so a database
    that could not be opened (directory missing or read-only) works once the cause is fixed.
    Opening migrates `schemas`, the tables of every capability that uses this database.
    Users share a Database; it closes when the last of them releases it.

    SQLite's errors reach callers as this package's: `DatabaseUnavailableError` for what may pass
    (locked past the busy timeout, disk full, read-only, I/O error), `DatabaseCorruptError` for a
    file that is not a database, `SchemaError` for one a newer Vigil wrote.
    """

    def __init__(
        self,
        path: Path,
        schemas: Sequence[Schema],
        busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.path = path
        self.schemas = tuple(schemas)
        self.busy_timeout_seconds = busy_timeout_seconds
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vigil-db")
        self._db: sqlite3.Connection | None = None
        self._users = 0
        self._users_lock = threading.Lock()

    def acquire(self) -> None:
        """Count one more user of the database."""
        with self._users_lock:
            self._users += 1

    def release(self) -> None:
        """Count one user less; the last one closes the connection and stops the thread."""
        with self._users_lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self._executor.submit(self._close).result()
            self._executor.shutdown(wait=True)

    async def open(self) -> None:
        """Open the file now and migrate it, rather than at the first call."""
        await self.run(lambda db: None)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the database thread, awaited.

        A cancelled caller stops waiting; work already started still ends on the thread (a
        commit is then stored or not, atomically), and work not yet started never runs.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._with_connection, work)

    def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the database thread, waited for (from any other thread)."""
        return self._executor.submit(self._with_connection, work).result()

    def _with_connection(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            self._db = connect(self.path, self.busy_timeout_seconds, self.schemas)
        try:
            return work(self._db)
        except sqlite3.Error as exc:
            mapped = translate(self.path, exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()


def connect(
    path: Path, busy_timeout_seconds: float, schemas: Sequence[Schema]
) -> sqlite3.Connection:
    """A connection to `path` in WAL mode with synchronous FULL, its `schemas` migrated."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUnavailableError(f"cannot create {path.parent}: {exc}") from exc
    try:
        # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    except sqlite3.Error as exc:
        raise DatabaseUnavailableError(f"cannot open {path}: {exc}") from exc
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_seconds * 1000)}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise DatabaseUnavailableError(f"{path}: cannot use WAL mode (got {mode})")
        # A change is acknowledged only once its commit is durable. In WAL mode, NORMAL syncs
        # only at checkpoints, so a power loss may undo the last acknowledged transactions;
        # FULL syncs the WAL at every commit.
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db, path, schemas)
    except BaseException as exc:
        db.close()
        mapped = translate(path, exc, opening=True) if isinstance(exc, sqlite3.Error) else None
        if mapped is None:
            raise
        raise mapped from exc
    return db


def translate(path: Path, exc: sqlite3.Error, opening: bool = False) -> Exception | None:
    """SQLite's error as this package's: what may pass is unavailable, a file that is not a
    database is corrupt; None for a programming error (a constraint, a bad statement), which
    stays itself."""
    if isinstance(exc, sqlite3.OperationalError):
        doing = "cannot open " if opening else ""
        return DatabaseUnavailableError(f"{doing}{path}: {exc}")
    if type(exc) in (sqlite3.DatabaseError, sqlite3.DataError, sqlite3.InternalError):
        return DatabaseCorruptError(f"{path}: not a usable SQLite database: {exc}")
    return None
