"""The SQL side of logical backups: the source's facts and the snapshot a dump reads, whether a
restore's destination is empty, scratch databases for drills, and the drills' validation queries.

Every connection is made with the job's target (password handed to libpq, never in a string that
is logged) and every error message is redacted before it leaves this module.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from agent.backup.errors import BackupError, Reason
from agent.backup.pgtools import PgTarget
from agent.config.backup import ValidationQuery
from agent.telemetry.redact import redactor

MAINTENANCE_DATABASES = ("postgres", "template1")
"""Where CREATE and DROP DATABASE connect from: the first that exists."""

_TABLES = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\\_%'
"""
# Anything a restore could collide with: a relation, a function or type of its own, or a schema
# other than the `public` every new database has.
_NOT_EMPTY = """
SELECT EXISTS (
    SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
) OR EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
) OR EXISTS (
    SELECT 1 FROM pg_namespace n
    WHERE n.nspname NOT IN ('public', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
)
"""


class DatabaseState(enum.Enum):
    """What a restore would write into."""

    ABSENT = "absent"
    EMPTY = "empty"
    NOT_EMPTY = "not empty"


def message(exc: BaseException) -> str:
    """An error's text, one line, with any registered secret masked."""
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    return redactor.text(text)


def connect(target: PgTarget, dbname: str, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection to `dbname` on the target; BackupError (source) when it cannot be made."""
    try:
        return psycopg.connect(
            target.conninfo(dbname), password=target.password, autocommit=autocommit
        )
    except psycopg.Error as exc:
        raise BackupError(
            Reason.SOURCE, f"cannot connect to database {dbname!r}: {message(exc)}"
        ) from None


def one_row(target: PgTarget, query: str, doing: str) -> tuple[Any, ...]:
    """The single row `query` returns on the target's database; BackupError (source) naming
    what it was `doing` when the server cannot be reached or the query fails."""
    try:
        with connect(target, target.dbname) as conn:
            row = conn.execute(query).fetchone()
    except psycopg.Error as exc:
        raise BackupError(Reason.SOURCE, f"cannot {doing}: {message(exc)}") from None
    if row is None:
        raise BackupError(Reason.SOURCE, f"cannot {doing}: no row")
    return tuple(row)


@contextlib.contextmanager
def _maintenance(target: PgTarget) -> Iterator[psycopg.Connection[Any]]:
    last: BackupError | None = None
    for dbname in MAINTENANCE_DATABASES:
        try:
            conn = connect(target, dbname)
        except BackupError as exc:
            last = exc
            continue
        with conn:
            yield conn
        return
    assert last is not None
    raise last


class Snapshot:
    """A session on the source that exported a snapshot for pg_dump (`--snapshot`), so the dump,
    its table count and its `now()` (the backup's recovery point) see the same moment; held open
    until the dump has ended, since an exported snapshot lives as long as its transaction."""

    def __init__(self, target: PgTarget, dbname: str) -> None:
        self.conn = connect(target, dbname)
        try:
            # A server-side idle timeout would end the transaction, and the snapshot with it.
            self.conn.execute("SET idle_in_transaction_session_timeout = 0")
            self.conn.autocommit = False
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self.conn.read_only = True
            row = self.conn.execute(
                "SELECT pg_export_snapshot(), extract(epoch FROM now())::float8,"
                " current_setting('server_version'), current_setting('server_version_num')::int,"
                " pg_database_size(current_database()), pg_encoding_to_char(encoding),"
                " datcollate, datctype FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            tables = self.conn.execute(_TABLES).fetchone()
        except psycopg.Error as exc:
            self.conn.close()
            raise BackupError(
                Reason.SOURCE, f"cannot read database {dbname!r}: {message(exc)}"
            ) from None
        assert row is not None
        assert tables is not None
        self.id: str = row[0]
        self.facts: dict[str, Any] = {
            "database": dbname,
            "snapshot_time": row[1],
            "server_version": row[2],
            "server_version_num": row[3],
            "database_bytes": row[4],
            "encoding": row[5],
            "collate": row[6],
            "ctype": row[7],
            "tables": tables[0],
        }

    def end_sessions(self, application_name: str) -> None:
        """Terminate the server sessions named `application_name` (best effort)."""
        _terminate(self.conn, application_name)

    def close(self) -> None:
        """End the transaction (and the snapshot) and the session."""
        self.conn.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _terminate(conn: psycopg.Connection[Any], application_name: str) -> None:
    # Best effort: a failure to clean up must not hide the error being handled.
    with contextlib.suppress(psycopg.Error):
        # pg_stat_activity is read once per transaction unless told to read it afresh.
        conn.execute("SELECT pg_stat_clear_snapshot()")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        )


def end_sessions(target: PgTarget, application_name: str) -> None:
    """Terminate the target's sessions named `application_name`, a killed program's backends
    (best effort: nothing is raised)."""
    with contextlib.suppress(BackupError), _maintenance(target) as conn:
        _terminate(conn, application_name)


def database_state(target: PgTarget, dbname: str) -> DatabaseState:
    """Whether `dbname` exists on the target and holds objects of its own."""
    with _maintenance(target) as conn:
        try:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        except psycopg.Error as exc:
            raise BackupError(Reason.SOURCE, f"cannot list databases: {message(exc)}") from None
    if row is None:
        return DatabaseState.ABSENT
    with connect(target, dbname) as conn:
        try:
            used = conn.execute(_NOT_EMPTY).fetchone()
        except psycopg.Error as exc:
            raise BackupError(Reason.SOURCE, f"cannot inspect {dbname!r}: {message(exc)}") from None
    return DatabaseState.NOT_EMPTY if used and used[0] else DatabaseState.EMPTY


def create_database(target: PgTarget, name: str, encoding: str | None = None) -> None:
    """Create the empty database `name` from template0 (in the dump's encoding, when known)."""
    stmt = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if encoding:
        stmt = sql.SQL("{} ENCODING {}").format(stmt, sql.Literal(encoding))
    with _maintenance(target) as conn:
        try:
            conn.execute(stmt)
        except psycopg.errors.DuplicateDatabase:
            raise BackupError(Reason.REFUSED, f"database {name!r} already exists") from None
        except psycopg.Error as exc:
            raise BackupError(
                Reason.SOURCE, f"cannot create database {name!r}: {message(exc)}"
            ) from None


def create_scratch_database(target: PgTarget, name: str, encoding: str | None = None) -> None:
    """Create a drill's scratch database, dropping a leftover of the same name first (a drill
    that died before its cleanup)."""
    drop_database(target, name)
    create_database(target, name, encoding)


def drop_database(target: PgTarget, name: str) -> None:
    """Drop `name` if it exists, ending its sessions."""
    stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with _maintenance(target) as conn:
        try:
            conn.execute(stmt)
        except psycopg.Error as exc:
            raise BackupError(
                Reason.SOURCE, f"cannot drop database {name!r}: {message(exc)}"
            ) from None


def validate(
    target: PgTarget,
    dbname: str,
    queries: Sequence[ValidationQuery],
    statement_timeout_seconds: float = 60.0,
) -> list[tuple[str, bool, str]]:
    """Run each query in a read-only transaction of its own: (name, passed, why) for each; a
    query passes when it returns one row whose first column is true. BackupError (source) when
    the database cannot be reached at all."""
    results: list[tuple[str, bool, str]] = []
    timeout_ms = str(max(1, int(statement_timeout_seconds * 1000)))
    with connect(target, dbname) as conn:
        for query in queries:
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout_ms,))
                    # The query is the operator's own SQL from the config, run verbatim.
                    cursor = conn.execute(query.sql.encode())
                    rows = cursor.fetchall() if cursor.description is not None else None
            except psycopg.Error as exc:
                results.append((query.name, False, message(exc)))
                continue
            results.append((query.name, *_judge(rows)))
    return results


def _judge(rows: list[tuple[Any, ...]] | None) -> tuple[bool, str]:
    if rows is None:
        return False, "returned no result set"
    if len(rows) != 1:
        return False, f"returned {len(rows)} rows, not one"
    if not rows[0]:
        return False, "returned a row without columns"
    value = rows[0][0]
    if value is True:
        return True, "true"
    return False, f"returned {_show(value)}, not true"


def _show(value: Any) -> str:
    text = repr(value)
    return redactor.text(text if len(text) <= 80 else text[:77] + "...")
