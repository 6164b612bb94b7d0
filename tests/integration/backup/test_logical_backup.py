"""Logical PostgreSQL backups against a private PostgreSQL: what pg_dump stored comes back row for
row in both formats, with and without age; a killed or stalled pg_dump leaves no artifact; a
tampered artifact, a wrong key or an occupied destination is refused before pg_restore runs."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyrage  # type: ignore[import-untyped]
import pytest

from agent.backup import logical
from agent.backup.artifact import Codec
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import BackupType, Kind, Manifest, backup_id
from agent.backup.pgtools import PgTarget
from agent.backup.repository import Repository
from agent.config.backup import PostgresJob, ValidationQuery
from tests.harness.postgres import PostgresServer
from tests.harness.process import wait_until

pytestmark = pytest.mark.integration

SOURCE = "vigil_logical_src"
IDENTITY = pyrage.x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())
TABLES = ("customers", "orders", "blobs", "zz_big")

SCHEMA = """
CREATE TABLE customers (
    id serial PRIMARY KEY, name text NOT NULL, city text, joined date, score numeric(8, 2)
);
CREATE INDEX customers_city ON customers (city);
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    placed timestamptz NOT NULL, amount_cents bigint, note text, tags text[], extra jsonb
);
CREATE INDEX orders_customer ON orders (customer_id, placed);
CREATE SEQUENCE invoice_numbers START 1000 INCREMENT 7;
CREATE TABLE blobs (id int PRIMARY KEY, body bytea, digest text);
CREATE TABLE zz_big (id int PRIMARY KEY, payload text);
CREATE VIEW big_spenders AS
    SELECT c.name, sum(o.amount_cents) AS total
    FROM customers c JOIN orders o ON o.customer_id = c.id
    GROUP BY c.name HAVING sum(o.amount_cents) > 300000;
INSERT INTO customers (name, city, joined, score)
    SELECT (ARRAY['Zoë', 'Łukasz', '山田太郎', 'Ελένη', 'O''Brien', 'plain'])[1 + g % 6]
               || ' ' || g,
           CASE WHEN g % 5 = 0 THEN NULL
                ELSE (ARRAY['Kraków', 'Zürich', '東京', 'Oslo'])[1 + g % 4] END,
           date '2020-01-01' + g % 1500, CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 10000) / 3.0 END
    FROM generate_series(1, 3000) g;
INSERT INTO orders (customer_id, placed, amount_cents, note, tags, extra)
    SELECT 1 + g % 3000, timestamptz '2024-01-01 00:00:00+00' + g * interval '17 minutes',
           CASE WHEN g % 11 = 0 THEN NULL ELSE g * 37 % 100000 END,
           CASE WHEN g % 3 = 0 THEN NULL ELSE 'tab	quote'' back\\slash newline
ünïcødé ' || md5(g::text) END,
           ARRAY['a' || g % 4, 'b'], jsonb_build_object('n', g, 'ok', g % 2 = 0)
    FROM generate_series(1, 20000) g;
INSERT INTO blobs
    SELECT g, CASE WHEN g % 10 = 0 THEN NULL
                   ELSE decode(repeat(md5(g::text), g % 50), 'hex') || '\\x00ff00'::bytea END,
           md5(g::text) FROM generate_series(1, 500) g;
INSERT INTO zz_big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 250000) g;
SELECT setval('invoice_numbers', 4711);
ANALYZE;
"""

QUERIES = [
    ValidationQuery(name="customers", sql="SELECT count(*) = 3000 FROM customers"),
    ValidationQuery(name="spenders", sql="SELECT count(*) > 0 FROM big_spenders"),
    ValidationQuery(name="sequence", sql="SELECT last_value = 4711 FROM invoice_numbers"),
    ValidationQuery(
        name="unicode", sql="SELECT count(*) > 0 FROM customers WHERE name LIKE '山田太郎%'"
    ),
]


def _target(server: PostgresServer, dbname: str = SOURCE) -> PgTarget:
    return PgTarget(
        server.host, server.port, server.superuser, dbname, password=server.superuser_password
    )


def _job(fmt: str = "custom", jobs: int = 1, **extra: Any) -> PostgresJob:
    return PostgresJob(kind="postgres", name="shop", dbname=SOURCE, format=fmt, jobs=jobs, **extra)


def _fingerprint(server: PostgresServer, dbname: str) -> dict[str, Any]:
    """An md5 of every table's rows in key order, the sequence, the view and the indexes."""
    with psycopg.connect(server.dsn(dbname=dbname)) as conn:
        prints: dict[str, Any] = {}
        for table in TABLES:
            prints[table] = conn.execute(
                f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id)) FROM {table} t"  # noqa: S608 - fixed names
            ).fetchone()
        prints["sequence"] = conn.execute("SELECT last_value FROM invoice_numbers").fetchone()
        prints["view"] = conn.execute(
            "SELECT md5(string_agg(b::text, '|' ORDER BY name)) FROM big_spenders b"
        ).fetchone()
        prints["indexes"] = conn.execute(
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes"
            " WHERE schemaname = 'public'"
        ).fetchone()
        return prints


@pytest.fixture(scope="module")
def source(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """The session PostgreSQL with the source database (dropped at the end)."""
    postgres_server.execute(f"DROP DATABASE IF EXISTS {SOURCE} WITH (FORCE)")
    postgres_server.create_database(SOURCE)
    with psycopg.connect(postgres_server.dsn(dbname=SOURCE), autocommit=True) as conn:
        conn.execute(SCHEMA)
    yield postgres_server
    postgres_server.execute(f"DROP DATABASE IF EXISTS {SOURCE} WITH (FORCE)")


@pytest.fixture
def restored(source: PostgresServer) -> Iterator[list[str]]:
    """Names of databases a test restores into; each dropped after the test."""
    names: list[str] = []
    yield names
    for name in names:
        logical.drop_database(_target(source), name)


class Backup:
    """A committed backup of the source: the repository, its manifest and its directory."""

    def __init__(self, repo: Repository, manifest: Manifest) -> None:
        self.repo = repo
        self.manifest = manifest
        self.dir = repo.backup_path(manifest.job, manifest.id)

    @property
    def artifact(self) -> Path:
        """The stored dump."""
        return self.dir / self.manifest.artifacts[0].name


def _backup(server: PostgresServer, tmp_path: Path, job: PostgresJob, codec: Codec) -> Backup:
    repo = Repository(tmp_path / "repo")
    repo.ensure()
    started = time.time()
    staging = repo.stage(job.name, backup_id(started, BackupType.FULL, set()))
    artifacts, details = logical.dump(job, _target(server), staging, codec, timeout=60)
    manifest = Manifest(
        staging.id, job.name, Kind.POSTGRES_LOGICAL, BackupType.FULL, None, started,
        time.time(), tuple(artifacts), details,
    )  # fmt: skip
    repo.commit(staging, manifest)
    return Backup(repo, manifest)


CASES = [
    pytest.param("custom", (), 1, id="custom"),
    pytest.param("custom", (RECIPIENT,), 2, id="custom-age-jobs2"),
    pytest.param("directory", (), 2, id="directory-jobs2"),
    pytest.param("directory", (RECIPIENT,), 1, id="directory-age"),
]


@pytest.mark.parametrize(("fmt", "recipients", "jobs"), CASES)
def test_dump_and_restore_round_trip(
    source: PostgresServer,
    restored: list[str],
    tmp_path: Path,
    fmt: str,
    recipients: tuple[str, ...],
    jobs: int,
) -> None:
    """A dump restored into a new database has the source's rows, sequence, view and indexes,
    and the drill's queries pass on it; the details describe the source."""
    job = _job(fmt, jobs=jobs if fmt == "directory" else 1)
    backup = _backup(source, tmp_path, job, Codec(recipients=recipients))
    name = f"vigil_restored_{fmt}_{len(recipients)}_{jobs}"
    restored.append(name)

    result = logical.restore(
        backup.manifest, backup.dir, _target(source), name, [IDENTITY], jobs=jobs,
        timeout=60, create=True, scratch=tmp_path,
    )  # fmt: skip

    assert result.created
    assert _fingerprint(source, name) == _fingerprint(source, SOURCE)
    assert logical.validate(_target(source), name, QUERIES) == [
        (q.name, True, "true") for q in QUERIES
    ]
    details = backup.manifest.details
    assert details["database"] == SOURCE
    assert details["tables"] == len(TABLES)
    assert details["server_version"].startswith("15")
    assert details["pg_dump_version"].startswith("15")
    assert details["format"] == fmt
    assert details["database_bytes"] > 10_000_000
    assert abs(details["snapshot_time"] - backup.manifest.started) < 30
    info = backup.manifest.artifacts[0]
    assert (
        info.name
        == ("dump" if fmt == "custom" else "dump.tar") + Codec(recipients=recipients).suffix()
    )
    assert info.stored_bytes < info.plain_bytes / 2  # zstd did the compressing, not pg_dump
    assert logical.list_contents(backup.manifest, backup.dir, [IDENTITY], scratch=tmp_path) > 15
    assert list(tmp_path.glob("vigil-*")) == []  # scratch files are gone


def _terminating(source: PostgresServer, conn: psycopg.Connection[Any], seen: list[str]) -> Any:
    """A progress callback that terminates pg_dump's backend once it is copying a table, and
    checks on the way that the password is on no command line."""
    killed: list[int] = []

    def progress(_: int) -> None:
        for pid in os.listdir("/proc"):
            with contextlib.suppress(OSError):
                seen.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
        if not killed:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND query LIKE 'COPY %%' AND pid <> pg_backend_pid()",
                (SOURCE,),
            ).fetchall()
            killed.extend(1 for row in rows if row[0])

    progress.killed = killed  # type: ignore[attr-defined]
    return progress


@pytest.mark.parametrize("recipients", [(), (RECIPIENT,)], ids=["plain", "age"])
def test_dump_killed_mid_stream_leaves_no_artifact(
    source: PostgresServer, tmp_path: Path, recipients: tuple[str, ...]
) -> None:
    """pg_dump's connection terminated while it streams a table: a tool error, and the partial
    artifact is gone; the password was never on a command line."""
    repo = Repository(tmp_path / "repo")
    repo.ensure()
    staging = repo.stage("shop", backup_id(time.time(), BackupType.FULL, set()))
    seen: list[str] = []
    with psycopg.connect(source.dsn(), autocommit=True) as conn:
        progress = _terminating(source, conn, seen)
        with pytest.raises(BackupError) as caught:
            logical.dump(
                _job(), _target(source), staging, Codec(recipients=recipients), progress, 60
            )
    assert progress.killed
    assert caught.value.reason is Reason.TOOL
    assert "pg_dump exited 1" in str(caught.value)
    assert list(staging.path.iterdir()) == []
    assert seen
    assert not any(source.superuser_password in line for line in seen)


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_stalled_dump_is_killed_at_the_timeout(
    source: PostgresServer, tmp_path: Path, fmt: str
) -> None:
    """A pg_dump waiting on a lock past the timeout is killed: `timeout`, nothing left behind."""
    repo = Repository(tmp_path / "repo")
    repo.ensure()
    staging = repo.stage("shop", backup_id(time.time(), BackupType.FULL, set()))
    with psycopg.connect(source.dsn(dbname=SOURCE)) as conn:
        conn.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(BackupError) as caught:
            logical.dump(_job(fmt), _target(source), staging, Codec(), timeout=1.0)
        # While the lock is still held, nothing of the dump is left on the server: a backend
        # queued for the lock would hold up every later locker of the table.
        wait_until(lambda: _dump_sessions(source) == 0, 5.0, "the dump's sessions to end")
        conn.rollback()
    assert caught.value.reason is Reason.TIMEOUT
    assert list(staging.path.iterdir()) == []


def _dump_sessions(server: PostgresServer) -> int:
    rows = server.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'vigil-%%'"
    )
    return int(rows[0][0])


@pytest.fixture(scope="module")
def backups(source: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Backup]:
    """One plain backup per format and an encrypted custom one, shared by the refusal tests."""
    root = tmp_path_factory.mktemp("backups")
    return {
        "custom": _backup(source, root / "c", _job("custom"), Codec()),
        "directory": _backup(source, root / "d", _job("directory", 2), Codec()),
        "age": _backup(source, root / "a", _job("custom"), Codec(recipients=(RECIPIENT,))),
    }


def _exists(server: PostgresServer, name: str) -> bool:
    return bool(server.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


@pytest.mark.parametrize(("which", "jobs"), [("custom", 1), ("custom", 2), ("directory", 1)])
def test_flipped_byte_refused_before_pg_restore(
    source: PostgresServer,
    backups: dict[str, Backup],
    restored: list[str],
    tmp_path: Path,
    which: str,
    jobs: int,
) -> None:
    """One flipped byte in the stored dump: integrity error, and no database was even made."""
    original = backups[which]
    copy = tmp_path / "copy"
    copy.mkdir()
    data = bytearray(original.artifact.read_bytes())
    data[len(data) // 2] ^= 0x20
    (copy / original.artifact.name).write_bytes(bytes(data))
    name = f"vigil_flipped_{which}_{jobs}"
    restored.append(name)

    with pytest.raises(IntegrityError):
        logical.restore(
            original.manifest, copy, _target(source), name, jobs=jobs, create=True,
            scratch=tmp_path,
        )  # fmt: skip

    assert not _exists(source, name)
    with pytest.raises(IntegrityError):
        logical.list_contents(original.manifest, copy, scratch=tmp_path)


@pytest.mark.parametrize("jobs", [1, 2])
def test_wrong_or_missing_key_refused(
    source: PostgresServer, backups: dict[str, Backup], restored: list[str], jobs: int
) -> None:
    """An encrypted dump with another identity, or none: an encryption error, no database."""
    backup = backups["age"]
    name = f"vigil_wrong_key_{jobs}"
    restored.append(name)
    other = pyrage.x25519.Identity.generate()
    for identities in ([other], []):
        with pytest.raises(BackupError) as caught:
            logical.restore(
                backup.manifest, backup.dir, _target(source), name, identities, jobs=jobs,
                create=True,
            )  # fmt: skip
        assert caught.value.reason is Reason.ENCRYPTION
    assert not _exists(source, name)


def test_occupied_or_missing_destination_refused(
    source: PostgresServer, backups: dict[str, Backup], restored: list[str]
) -> None:
    """A database with objects is refused unless `clean`, which replaces them; a missing one
    is refused unless `create`; the source itself is never overwritten by accident."""
    backup = backups["custom"]
    target = _target(source)
    name = "vigil_occupied"
    restored.append(name)
    with pytest.raises(BackupError) as absent:
        logical.restore(backup.manifest, backup.dir, target, name)
    assert absent.value.reason is Reason.REFUSED
    assert "does not exist" in str(absent.value)

    logical.restore(backup.manifest, backup.dir, target, name, create=True)
    with psycopg.connect(source.dsn(dbname=name), autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE id % 2 = 0")
    for dbname in (name, SOURCE):
        with pytest.raises(BackupError) as occupied:
            logical.restore(backup.manifest, backup.dir, target, dbname, create=True)
        assert occupied.value.reason is Reason.REFUSED
        assert "not empty" in str(occupied.value)

    result = logical.restore(backup.manifest, backup.dir, target, name, clean=True, no_owner=True)

    assert not result.created
    assert _fingerprint(source, name) == _fingerprint(source, SOURCE)


def test_stalled_restore_is_killed_and_changes_nothing(
    source: PostgresServer, backups: dict[str, Backup], restored: list[str]
) -> None:
    """A clean restore blocked by a lock past its timeout is killed, its session ended while the
    lock is still held, and the database is as it was (one transaction)."""
    backup = backups["custom"]
    target = _target(source)
    name = "vigil_locked"
    restored.append(name)
    logical.restore(backup.manifest, backup.dir, target, name, create=True)
    with psycopg.connect(source.dsn(dbname=name), autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE id % 3 = 0")
    before = _fingerprint(source, name)

    with psycopg.connect(source.dsn(dbname=name)) as conn:
        conn.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(BackupError) as caught:
            logical.restore(backup.manifest, backup.dir, target, name, clean=True, timeout=1.0)
        wait_until(lambda: _dump_sessions(source) == 0, 5.0, "the restore's session to end")
        conn.rollback()

    assert caught.value.reason is Reason.TIMEOUT
    assert _fingerprint(source, name) == before


def test_restore_into_an_existing_empty_database(
    source: PostgresServer, backups: dict[str, Backup], restored: list[str]
) -> None:
    """An empty database (a drill's scratch one) takes the restore without `create`."""
    backup = backups["directory"]
    target = _target(source)
    name = "vigil_drill_shop_1"
    restored.append(name)
    logical.create_scratch_database(target, name, backup.manifest.details["encoding"])
    logical.restore(backup.manifest, backup.dir, target, name, jobs=2)
    with psycopg.connect(source.dsn(dbname=name)):
        # A leftover scratch database (with a session open) is replaced, not an error.
        logical.create_scratch_database(target, name)
    assert logical.validate(target, name, QUERIES[:1])[0][1] is False
    logical.drop_database(target, name)
    logical.drop_database(target, name)  # already gone: nothing to do
    assert not _exists(source, name)


def test_failing_validation_queries_are_reported(source: PostgresServer) -> None:
    """False, NULL, a number, several rows, an error, a write and a slow query each fail with why;
    the queries after a failure still run."""
    queries = [
        ValidationQuery(name="false", sql="SELECT count(*) = 0 FROM customers"),
        ValidationQuery(name="null", sql="SELECT NULL::boolean"),
        ValidationQuery(name="number", sql="SELECT 1"),
        ValidationQuery(name="rows", sql="SELECT true FROM generate_series(1, 2)"),
        ValidationQuery(name="error", sql="SELECT 1 / 0 = 1"),
        ValidationQuery(name="missing", sql="SELECT count(*) > 0 FROM no_such_table"),
        ValidationQuery(name="write", sql="CREATE TABLE sneaky (id int)"),
        ValidationQuery(name="slow", sql="SELECT pg_sleep(5) IS NULL"),
        ValidationQuery(name="good", sql="SELECT count(*) = 3000 FROM customers"),
    ]
    results = {
        name: (passed, why)
        for name, passed, why in logical.validate(
            _target(source), SOURCE, queries, statement_timeout_seconds=0.2
        )
    }
    assert list(results) == [q.name for q in queries]
    assert results["good"] == (True, "true")
    assert results["false"] == (False, "returned False, not true")
    assert results["null"] == (False, "returned None, not true")
    assert results["number"] == (False, "returned 1, not true")
    assert results["rows"] == (False, "returned 2 rows, not one")
    assert "division by zero" in results["error"][1]
    assert "no_such_table" in results["missing"][1]
    assert "read-only transaction" in results["write"][1]
    assert "statement timeout" in results["slow"][1]
    assert not any(passed for passed, _ in list(results.values())[:-1])
    assert not source.execute("SELECT 1 FROM pg_tables WHERE tablename = 'sneaky'")


def test_garbage_dump_fails_listing_and_restore(
    source: PostgresServer, tmp_path: Path, restored: list[str]
) -> None:
    """An artifact that checks out but holds no dump: pg_restore's error, and the database the
    restore created is dropped again."""
    repo = Repository(tmp_path / "repo")
    repo.ensure()
    staging = repo.stage("shop", backup_id(time.time(), BackupType.FULL, set()))
    with staging.artifact("dump", Codec()) as writer:
        writer.write(b"PGDMP" + os.urandom(50_000))
        info = writer.finish()
    manifest = Manifest(
        staging.id, "shop", Kind.POSTGRES_LOGICAL, BackupType.FULL, None, 1.0, 2.0, (info,),
        {"format": "custom"},
    )  # fmt: skip
    path = repo.commit(staging, manifest)
    name = "vigil_garbage"
    restored.append(name)

    with pytest.raises(BackupError) as listing:
        logical.list_contents(manifest, path)
    with pytest.raises(BackupError) as restoring:
        logical.restore(manifest, path, _target(source), name, create=True)

    assert listing.value.reason is Reason.TOOL
    assert "pg_restore exited 1" in str(listing.value)
    assert restoring.value.reason is Reason.TOOL
    assert not _exists(source, name)


def test_bad_password_is_a_source_error_without_the_secret(
    source: PostgresServer, tmp_path: Path
) -> None:
    """A refused login is a `source` error naming the database, never the password."""
    secret = "not-the-Password-9931"
    target = PgTarget(source.host, source.port, source.superuser, SOURCE, password=secret)
    repo = Repository(tmp_path / "repo")
    repo.ensure()
    staging = repo.stage("shop", backup_id(time.time(), BackupType.FULL, set()))
    with pytest.raises(BackupError) as caught:
        logical.dump(_job(), target, staging, Codec())
    assert caught.value.reason is Reason.SOURCE
    assert SOURCE in str(caught.value)
    assert secret not in str(caught.value)
    assert list(staging.path.iterdir()) == []
