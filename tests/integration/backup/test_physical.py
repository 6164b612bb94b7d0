"""Base backups that cannot be taken fail with the right reason and leave no artifact behind:
a refused password, a timeout, a cluster with a tablespace that cannot go to one stream."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.backup.artifact import Codec
from agent.backup.errors import BackupError, Reason
from agent.backup.pgtools import PgTarget
from agent.backup.physical import base_backup
from agent.backup.repository import Repository, Staging
from agent.config.backup import PostgresJob
from tests.harness.postgres import PostgresServer

pytestmark = pytest.mark.integration


def _job(server: PostgresServer) -> PostgresJob:
    return PostgresJob(
        name="main",
        kind="postgres",
        mode="physical",
        host="127.0.0.1",
        port=server.port,
        password_env="VIGIL_TEST_PHYSICAL_PASSWORD",
    )


def _staging(tmp_path: Path) -> Staging:
    repository = Repository(tmp_path / "repo")
    repository.ensure()
    return repository.stage("main", "20261207T050000Z-F")


def test_a_base_backup_of_a_plain_cluster(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster without archiving is backed up with its WAL inside; both artifacts stored."""
    monkeypatch.setenv("VIGIL_TEST_PHYSICAL_PASSWORD", postgres_server.superuser_password)
    job = _job(postgres_server)
    staging = _staging(tmp_path)
    seen: list[int] = []
    result = base_backup(job, PgTarget.of(job), staging, Codec(level=1), seen.append, timeout=60)
    assert sorted(p.name for p in staging.path.iterdir()) == [
        "backup_manifest.zst",
        "base.tar.zst",
    ]
    base = next(a for a in result.artifacts if a.name == "base.tar.zst")
    assert sum(seen) == base.plain_bytes
    assert result.details["files"] > 100
    assert result.details["wal_included"] is True
    assert result.details["archive_mode"] == "off"


def test_a_refused_password_is_a_source_error(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong password fails as `source`, without the password in the message."""
    monkeypatch.setenv("VIGIL_TEST_PHYSICAL_PASSWORD", "not-the-Password-42")
    job = _job(postgres_server)
    staging = _staging(tmp_path)
    with pytest.raises(BackupError) as failed:
        base_backup(job, PgTarget.of(job), staging, Codec(), timeout=60)
    assert failed.value.reason is Reason.SOURCE
    assert "not-the-Password-42" not in str(failed.value)
    assert list(staging.path.iterdir()) == []


def test_a_timeout_kills_pg_basebackup(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its timeout the backup is stopped as `timeout` and its partial artifacts removed."""
    monkeypatch.setenv("VIGIL_TEST_PHYSICAL_PASSWORD", postgres_server.superuser_password)
    job = _job(postgres_server)
    staging = _staging(tmp_path)
    with pytest.raises(BackupError) as failed:
        base_backup(job, PgTarget.of(job), staging, Codec(), timeout=0.001)
    assert failed.value.reason is Reason.TIMEOUT
    assert list(staging.path.iterdir()) == []


def test_a_tablespace_is_refused_by_pg_basebackup(
    fresh_postgres: Callable[..., PostgresServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second tablespace cannot go to one stream: pg_basebackup refuses, the error says why."""
    server = fresh_postgres()
    monkeypatch.setenv("VIGIL_TEST_PHYSICAL_PASSWORD", server.superuser_password)
    location = Path(tempfile.mkdtemp(prefix="vigil-tblspc-", dir=server.dir))
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("postgres")
        os.chown(location, entry.pw_uid, entry.pw_gid)
    server.execute(f"CREATE TABLESPACE extra LOCATION '{location}'")
    job = _job(server)
    staging = _staging(tmp_path)
    with pytest.raises(BackupError) as failed:
        base_backup(job, PgTarget.of(job), staging, Codec(), timeout=60)
    assert failed.value.reason is Reason.TOOL
    assert "tablespace" in str(failed.value)
    assert list(staging.path.iterdir()) == []
