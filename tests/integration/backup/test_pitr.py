"""Point-in-time recovery end to end: a cluster archiving through `wal-push`, a base backup, and
new clusters recovered from them to a time, a restore point and an LSN, holding exactly the
commits before the target, their logs proving where recovery stopped; a hole in the archive
fails the recovery instead of ending it early."""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pyrage  # type: ignore[import-untyped]
import pytest
import yaml

from agent.backup import wal
from agent.backup.artifact import Codec, load_identities
from agent.backup.cluster import start_cluster, stop_cluster
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import BackupType, Kind, Manifest, backup_id
from agent.backup.pgtools import PgTarget
from agent.backup.physical import archiver_status, base_backup
from agent.backup.pitr import RecoveryTarget, check_backup, choose_base, restore
from agent.backup.repository import Repository
from agent.config.backup import PostgresJob
from tests.harness.ports import free_port
from tests.harness.postgres import OS_USER, PostgresServer
from tests.harness.wait import poll_until_sync

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).parents[3]
IDENTITY = pyrage.x25519.Identity.generate()
PASSWORD_ENV = "VIGIL_TEST_PITR_PASSWORD"


def wal_program() -> list[str]:
    """How PostgreSQL runs `python -m agent.wal_cli`: as root the cluster runs as `postgres`,
    who cannot enter root's home where this interpreter lives, so the system Python 3.11 runs
    this checkout with the venv's packages."""
    if os.geteuid() != 0:
        return [sys.executable, "-m", "agent.wal_cli"]
    site = REPO_ROOT / ".venv" / "lib" / "python3.11" / "site-packages"
    return ["env", f"PYTHONPATH={REPO_ROOT}:{site}", "/usr/bin/python3", "-m", "agent.wal_cli"]


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        for parent, dirs, files in os.walk(path):
            for name in [parent, *(os.path.join(parent, n) for n in dirs + files)]:
                os.chown(name, entry.pw_uid, entry.pw_gid)


@dataclasses.dataclass
class Archiving:
    """A cluster archiving into a repository, one base backup, and what was committed when."""

    server: PostgresServer
    base: Path
    config: Path
    repository: Repository
    job: PostgresJob
    manifest: Manifest
    restore_point_rows: int
    lsn: str
    lsn_rows: int
    time: datetime
    time_rows: int
    all_rows: int


def _manifest(job: str, bid: str, started: float, result: object) -> Manifest:
    return Manifest(
        id=bid,
        job=job,
        kind=Kind.POSTGRES_PHYSICAL,
        type=BackupType.FULL,
        parent=None,
        started=started,
        ended=time.time(),
        artifacts=result.artifacts,  # type: ignore[attr-defined]
        details=result.details,  # type: ignore[attr-defined]
    )


def _insert(server: PostgresServer, first: int, last: int) -> None:
    for n in range(first, last + 1):  # one transaction, one commit record each
        server.execute("INSERT INTO orders VALUES (%s)", (n,))


def _switch_and_wait(server: PostgresServer) -> None:
    """Close the current segment and wait until the archiver has stored it."""
    segment = server.execute("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    query = "SELECT last_archived_wal >= %s, failed_count FROM pg_stat_archiver"
    poll_until_sync(
        lambda: server.execute(query, (segment,))[0][0],
        30,
        what=lambda: f"{segment} archived; (done, failures): {server.execute(query, (segment,))}",
    )


@pytest.fixture(scope="module")
def archiving() -> Iterator[Archiving]:
    """A cluster with `archive_command` = our wal-push, a base backup, then 12 commits: a restore
    point after 3, an LSN after 6, a time after 9."""
    base = Path(tempfile.mkdtemp(prefix="vigil-pitr-"))
    base.chmod(0o755)
    key = base / "identity.txt"
    key.write_text(f"{IDENTITY}\n")
    config = base / "vigil.yaml"
    server = PostgresServer(extra_conf={})
    os.environ[PASSWORD_ENV] = server.superuser_password
    try:
        doc = {
            "checks": [{"name": "disk", "kind": "disk", "path": str(base)}],
            "backup": {
                "repository": {"path": str(base / "repo")},
                "encryption": {
                    "recipients": [str(IDENTITY.to_public())],
                    "identity_file": str(key),
                },
                "jobs": [
                    {
                        "name": "main",
                        "kind": "postgres",
                        "mode": "physical",
                        "password_env": PASSWORD_ENV,
                        "threads": 1,
                    }
                ],
            },
        }
        config.write_text(yaml.safe_dump(doc))
        repository = Repository(base / "repo")
        repository.ensure()
        _give_to_postgres(base)
        push = " ".join(
            [*wal_program(), "wal-push", "--config", str(config), "--job", "main", "%p"]
        )
        server.extra_conf = {"archive_mode": "on", "archive_command": push, "wal_level": "replica"}
        server.start()
        job = PostgresJob(
            name="main",
            kind="postgres",
            mode="physical",
            host="127.0.0.1",
            port=server.port,
            password_env=PASSWORD_ENV,
            threads=1,
        )
        server.execute("CREATE TABLE orders (n int PRIMARY KEY)")
        codec = Codec(threads=1, recipients=(str(IDENTITY.to_public()),))
        started = time.time()
        bid = backup_id(started, BackupType.FULL, frozenset())
        with repository.lock("main"):
            staging = repository.stage("main", bid)
            result = base_backup(job, PgTarget.of(job), staging, codec, timeout=120)
            manifest = _manifest("main", bid, started, result)
            repository.commit(staging, manifest)
        _switch_and_wait(server)
        _insert(server, 1, 3)
        server.execute("SELECT pg_create_restore_point('after_three')")
        _switch_and_wait(server)
        _insert(server, 4, 6)
        lsn = str(server.execute("SELECT pg_current_wal_lsn()")[0][0])
        _switch_and_wait(server)
        _insert(server, 7, 9)
        target_time = server.execute("SELECT now()")[0][0]
        _switch_and_wait(server)
        _insert(server, 10, 12)
        _switch_and_wait(server)
        yield Archiving(
            server, base, config, repository, job, manifest, 3, lsn, 6, target_time, 9, 12
        )
    finally:
        server.cleanup()
        os.environ.pop(PASSWORD_ENV, None)
        shutil.rmtree(base, ignore_errors=True)


def _recover(
    setup: Archiving, target: RecoveryTarget | None, name: str, repository: Repository | None = None
) -> tuple[Path, list[int], tuple[str, ...]]:
    """Restore the base into a new directory, recover to `target`, and read the orders."""
    repository = repository or setup.repository
    destination = setup.base / name
    details = restore(
        repository,
        setup.manifest,
        destination,
        load_identities(f"{IDENTITY}\n"),
        target,
        config_path=setup.config,
        program=wal_program(),
    )
    assert details["backup"] == setup.manifest.id
    port = free_port()
    try:
        started = start_cluster(destination, port, timeout=60)
        dsn = f"host={destination} port={port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = [r[0] for r in conn.execute("SELECT n FROM orders ORDER BY n").fetchall()]
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            assert conn.execute("SHOW archive_mode").fetchone() == ("off",)
    finally:
        stop_cluster(destination)
    return destination, rows, started.proof


def test_base_backup_details(archiving: Archiving) -> None:
    """The base backup records its LSNs, WAL segments, timeline and server facts, and stores
    the tar and its backup_manifest as encrypted artifacts."""
    details = archiving.manifest.details
    assert details["timeline"] == 1
    assert details["wal_start"].startswith("00000001")
    assert details["wal_start"] <= details["wal_stop"]
    assert details["server_version"].startswith("15")
    assert details["system_identifier"] == str(
        archiving.server.execute("SELECT system_identifier FROM pg_control_system()")[0][0]
    )
    assert details["server_start_time"] <= details["backup_end_time"]
    names = sorted(a.name for a in archiving.manifest.artifacts)
    assert names == ["backup_manifest.zst.age", "base.tar.zst.age"]
    assert all(a.key_id for a in archiving.manifest.artifacts)


def test_recovery_to_a_time(archiving: Archiving) -> None:
    """Recovery to a time keeps exactly the commits before it, and its log says so."""
    target = RecoveryTarget(time=archiving.time)
    assert choose_base([archiving.manifest], target) == archiving.manifest
    _, rows, proof = _recover(archiving, target, "to-time")
    assert any("selected new timeline ID: 2" in line for line in proof)
    assert rows == list(range(1, archiving.time_rows + 1))
    text = "\n".join(proof)
    assert "starting point-in-time recovery to" in text
    assert "recovery stopping before commit of transaction" in text
    assert "last completed transaction was at log time" in text


def test_recovery_to_a_restore_point(archiving: Archiving) -> None:
    """Recovery to a named restore point stops there."""
    _, rows, proof = _recover(archiving, RecoveryTarget(name="after_three"), "to-name")
    assert rows == list(range(1, archiving.restore_point_rows + 1))
    assert any('recovery stopping at restore point "after_three"' in line for line in proof)


def test_recovery_to_an_lsn(archiving: Archiving) -> None:
    """Recovery to an LSN keeps the commits before it."""
    _, rows, proof = _recover(archiving, RecoveryTarget(lsn=archiving.lsn), "to-lsn")
    assert rows == list(range(1, archiving.lsn_rows + 1))
    assert any("recovery stopping after WAL location (LSN)" in line for line in proof)


def test_recovery_to_the_end_of_the_archive(archiving: Archiving) -> None:
    """Without a target, recovery replays the whole archive: wal-fetch's "not archived" (exit 1)
    ends it, and every commit is there."""
    _, rows, proof = _recover(archiving, None, "to-end")
    assert rows == list(range(1, archiving.all_rows + 1))
    assert any("archive recovery complete" in line for line in proof)
    assert not any("recovery stopping" in line for line in proof)


def test_a_missing_segment_fails_the_recovery(archiving: Archiving) -> None:
    """With a segment between the backup and the target gone from the archive, recovery
    fails loudly; it does not promote a cluster short of the target."""
    copy = archiving.base / "repo-with-hole"
    shutil.copytree(archiving.repository.root, copy)
    _give_to_postgres(copy)
    repository = Repository(copy)
    after_backup = wal.archived(repository, "main").timelines[0]
    stop = archiving.manifest.details["wal_stop"]
    hole = next(
        s
        for s in (f"{n:024X}" for n in range(int(stop, 16) + 1, int(after_backup.last, 16)))
        if wal.find(repository, "main", s) is not None
    )
    stored = wal.find(repository, "main", hole)
    assert stored is not None
    stored.path.unlink()
    assert hole in wal.archived(repository, "main").timelines[0].missing
    config = archiving.base / "hole.yaml"
    doc = yaml.safe_load(archiving.config.read_text())
    doc["backup"]["repository"]["path"] = str(copy)
    config.write_text(yaml.safe_dump(doc))
    _give_to_postgres(config)
    setup = dataclasses.replace(archiving, config=config)
    with pytest.raises(BackupError) as failed:
        _recover(setup, RecoveryTarget(time=archiving.time), "with-hole", repository)
    assert failed.value.reason is Reason.TOOL
    assert "recovery ended before configured recovery target was reached" in str(failed.value)


def test_a_tampered_base_file_fails_pg_verifybackup(archiving: Archiving) -> None:
    """pg_verifybackup catches a relation file changed after extraction."""
    destination = archiving.base / "tampered"
    restore(
        archiving.repository,
        archiving.manifest,
        destination,
        load_identities(f"{IDENTITY}\n"),
        None,
        config_path=archiving.config,
    )
    victim = next(p for p in sorted((destination / "base").rglob("*")) if p.stat().st_size > 8192)
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as failed:
        check_backup(destination, parse_wal=True)
    assert victim.relative_to(destination).as_posix() in str(failed.value)


def test_a_restore_command_that_cannot_work_is_caught_before_starting(
    archiving: Archiving,
) -> None:
    """A restore_command postgres cannot use (here: a bad option) stops start_cluster
    before PostgreSQL runs."""
    destination = archiving.base / "bad-command"
    restore(
        archiving.repository,
        archiving.manifest,
        destination,
        load_identities(f"{IDENTITY}\n"),
        None,
        config_path=archiving.config,
        program=[*wal_program(), "--bogus-option"],
    )
    with pytest.raises(BackupError) as failed:
        start_cluster(destination, free_port(), timeout=30)
    assert failed.value.reason is Reason.TOOL
    assert "restore_command" in str(failed.value)
    assert not (destination / "postmaster.pid").exists()


def test_a_wrong_identity_for_wal_fetch_is_caught_before_starting(archiving: Archiving) -> None:
    """When the restored cluster's wal-fetch would read the archive with the wrong key, the
    check before starting fetches the backup's first segment and fails on it."""
    other = archiving.base / "other-identity.txt"
    other.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    doc = yaml.safe_load(archiving.config.read_text())
    doc["backup"]["encryption"]["identity_file"] = str(other)
    config = archiving.base / "other-key.yaml"
    config.write_text(yaml.safe_dump(doc))
    _give_to_postgres(archiving.base)
    destination = archiving.base / "other-key"
    restore(
        archiving.repository,
        archiving.manifest,
        destination,
        load_identities(f"{IDENTITY}\n"),
        None,
        config_path=config,
        program=wal_program(),
    )
    with pytest.raises(BackupError) as failed:
        start_cluster(destination, free_port(), timeout=30)
    assert "exited 126" in str(failed.value)
    assert "not encrypted to this identity" in str(failed.value)
    assert not (destination / "postmaster.pid").exists()
    assert not (destination / "pg_wal" / "VIGILPREFLIGHT").exists()


def test_restore_refuses_a_non_empty_destination(archiving: Archiving) -> None:
    """A destination holding anything is refused unless forced."""
    destination = archiving.base / "occupied"
    destination.mkdir()
    (destination / "precious").write_text("keep me")
    with pytest.raises(BackupError) as refused:
        restore(
            archiving.repository,
            archiving.manifest,
            destination,
            [],
            None,
            config_path=archiving.config,
        )
    assert refused.value.reason is Reason.REFUSED
    assert (destination / "precious").read_text() == "keep me"


def test_the_wrong_key_is_refused_before_extraction(archiving: Archiving) -> None:
    """Restoring with an identity the backup was not encrypted to fails and extracts nothing."""
    destination = archiving.base / "wrong-key"
    other = pyrage.x25519.Identity.generate()
    with pytest.raises(BackupError) as refused:
        restore(
            archiving.repository,
            archiving.manifest,
            destination,
            [other],
            None,
            config_path=archiving.config,
        )
    assert refused.value.reason is Reason.ENCRYPTION
    assert list(destination.iterdir()) == []


def test_archiver_status_reports_failures_and_recovery(archiving: Archiving) -> None:
    """The archiver status counts archived segments; while wal-push cannot write it shows the
    failures and the waiting files, and once it can again, the backlog drains."""
    server, target = archiving.server, PgTarget.of(archiving.job)
    healthy = archiver_status(target)
    assert healthy.archived_count >= 5
    assert (healthy.failed_count, healthy.pending, healthy.failing) == (0, 0, False)
    assert healthy.last_archived_age_seconds is not None
    segment = server.execute("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    folder = archiving.repository.root / "wal" / "main" / segment[:16]
    folder.chmod(0o555)
    try:
        server.execute("INSERT INTO orders VALUES (100)")
        server.execute("SELECT pg_switch_wal()")
        failing = poll_until_sync(
            lambda: (s := archiver_status(target)).failing and s.pending >= 1 and s,
            30,
            what="the archiver to fail",
        )
        assert failing.failed_count >= 1
    finally:
        folder.chmod(0o755)
    server.execute("INSERT INTO orders VALUES (101)")
    server.execute("SELECT pg_switch_wal()")
    drained = poll_until_sync(
        lambda: (s := archiver_status(target)).pending == 0 and not s.failing and s,
        30,
        what="the archiver to catch up",
    )
    assert drained.archived_count >= healthy.archived_count + 2
