"""The agent's embedded SQLite database: one file, one connection on one dedicated thread, the
pragmas that make a commit durable, and the ordered schema migrations."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from agent.degradation.errors import StateError, StoreUnavailableError

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 5.0
"""How long a write waits for another connection's lock before the store is unavailable."""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the degradation state (one row), its audit trail and the flag definitions (one row).
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
)
"""Migration N (1-based) brings a database from `user_version` N-1 to N; append, never edit."""

SCHEMA_VERSION = len(MIGRATIONS)


class Database:
    """One SQLite file, used only from one thread that this object owns.

    A `sqlite3.Connection` belongs to the thread that opened it, and a call into SQLite can block
    (an fsync, a lock held by another process): so every call runs on a single-thread executor,
    awaited from the event loop with `run` and waited for from other threads with `call`. The
    connection opens on first use, and opens again after a failed open, so a database that
    could not be opened (directory missing or read-only) works once the cause is fixed.
    Stores share a Database; it closes when the last of them releases it.
    """

    def __init__(self, path: Path, busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.path = path
        self.busy_timeout_seconds = busy_timeout_seconds
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vigil-db")
        self._db: sqlite3.Connection | None = None
        self._users = 0
        self._users_lock = threading.Lock()

    def acquire(self) -> None:
        """Count one more store using the database."""
        with self._users_lock:
            self._users += 1

    def release(self) -> None:
        """Count one store less; the last one closes the connection and stops the thread."""
        with self._users_lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self._executor.submit(self._close).result()
            self._executor.shutdown(wait=True)

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
            self._db = self._open()
        return work(self._db)

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create {self.path.parent}: {exc}") from exc
        try:
            # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE.
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open {self.path}: {exc}") from exc
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_seconds * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailableError(f"{self.path}: cannot use WAL mode (got {mode})")
            # A change is acknowledged only once its commit is durable. In WAL mode, NORMAL syncs
            # only at checkpoints, so a power loss may undo the last acknowledged transactions;
            # FULL syncs the WAL at every commit.
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            migrate(db, self.path)
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.OperationalError
            ):
                raise StateError(f"{self.path}: not a usable SQLite database: {exc}") from exc
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailableError(f"cannot open {self.path}: {exc}") from exc
            raise
        return db

    def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION, one transaction; StateError if it is newer."""
    version = _user_version(db)
    if version > SCHEMA_VERSION:
        raise StateError(_newer(path, version))
    if version == SCHEMA_VERSION:
        return
    with transaction(db):
        version = _user_version(db)  # another process may have migrated it meanwhile
        if version > SCHEMA_VERSION:
            raise StateError(_newer(path, version))
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` before the block and `COMMIT` after it; rolled back when either the
    block or the COMMIT raises, and the error goes on."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        # A failed COMMIT may leave the transaction open (SQLITE_BUSY) or rolled back already
        # (disk full): roll back only what is still open.
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.rollback()
        raise


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _newer(path: Path, version: int) -> str:
    return (
        f"{path}: database schema {version} is newer than this agent knows ({SCHEMA_VERSION});"
        " run a newer Vigil or restore a backup"
    )
