"""Schemas and their migrations: each capability owns its tables and their ordered migrations, and
the database records, per capability, which of them it has applied."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from agent.database.errors import SchemaError

FORMAT = 2
"""`PRAGMA user_version` of a database with per-capability schema versions.

Format 1 was the first SQLite store's layout: the degradation tables alone, their schema version
in `user_version`. Format 2 keeps each capability's version in the `schema_versions` table.
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Schema:
    """The tables of one capability: migration N (1-based) brings them from version N-1 to N.

    Append migrations, never edit one that has shipped: databases in the field have applied it.
    """

    name: str
    migrations: tuple[tuple[str, ...], ...]

    @property
    def version(self) -> int:
        """The version this code writes."""
        return len(self.migrations)


def migrate(db: sqlite3.Connection, path: Path, schemas: Sequence[Schema]) -> None:
    """Bring every schema in `schemas` to its version, in one transaction.

    SchemaError, with nothing changed, when the file or any of these schemas is newer than this
    code. Schemas of capabilities this code does not have are left alone.
    """
    if _current(db, path, schemas):
        return
    with transaction(db):
        # Read again under the write lock: another process may have migrated meanwhile.
        if _current(db, path, schemas):
            return
        file_format = _user_version(db)
        if file_format < FORMAT:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions"
                " (name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
        if file_format == 1:
            db.execute("INSERT OR IGNORE INTO schema_versions VALUES ('degradation', 1)")
        stored = _versions(db)
        for schema in schemas:
            for statements in schema.migrations[stored.get(schema.name, 0) :]:
                for statement in statements:
                    db.execute(statement)
            db.execute(
                "INSERT INTO schema_versions (name, version) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                (schema.name, schema.version),
            )
        db.execute(f"PRAGMA user_version = {FORMAT}")


def versions(db: sqlite3.Connection) -> dict[str, int]:
    """The schema version of each capability in the database (none before any migration)."""
    return _versions(db) if _user_version(db) >= FORMAT else {}


def check(db: sqlite3.Connection, path: Path, schemas: Sequence[Schema]) -> None:
    """SchemaError unless this code can use the database: no newer file format or schema."""
    _current(db, path, schemas)


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


def _current(db: sqlite3.Connection, path: Path, schemas: Sequence[Schema]) -> bool:
    """Whether every schema is at its version; SchemaError if the file or one is newer."""
    file_format = _user_version(db)
    if file_format > FORMAT:
        raise SchemaError(
            f"{path}: database format {file_format} is newer than this agent knows ({FORMAT});"
            " run a newer Vigil or restore a backup"
        )
    if file_format < FORMAT:
        return False
    stored = _versions(db)
    for schema in schemas:
        found = stored.get(schema.name, 0)
        if found > schema.version:
            raise SchemaError(
                f"{path}: {schema.name} schema {found} is newer than this agent knows"
                f" ({schema.version}); run a newer Vigil or restore a backup"
            )
    return all(stored.get(s.name, 0) == s.version for s in schemas)


def _versions(db: sqlite3.Connection) -> dict[str, int]:
    return {
        str(name): int(v) for name, v in db.execute("SELECT name, version FROM schema_versions")
    }


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])
