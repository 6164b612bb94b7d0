"""PostgreSQL jobs in the frame of `Backups`: a backup into a staging directory, the kind's own
verification, a restore and a drill, for logical dumps (`logical.py`) and base backups with the
WAL archive (`physical.py`, `pitr.py`, `cluster.py`)."""

from __future__ import annotations

import dataclasses
import re
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.backup import logical, pgsql
from agent.backup.artifact import Codec
from agent.backup.errors import BackupError, Reason
from agent.backup.manifest import ArtifactInfo, Kind, Manifest
from agent.backup.pgtools import PgTarget
from agent.backup.progress import Tracker
from agent.backup.repository import Repository, Staging
from agent.config.backup import PostgresJob


def backup(
    job: PostgresJob, staging: Staging, codec: Codec, tracker: Tracker
) -> tuple[Kind, list[ArtifactInfo], dict[str, Any]]:
    """Write one backup of `job` into `staging`: its kind, artifacts and details."""
    target = PgTarget.of(job)
    if job.mode == "logical":
        tracker.phase("dumping", None)
        artifacts, details = logical.dump(
            job, target, staging, codec, tracker.advance, tracker.remaining()
        )
        return Kind.POSTGRES_LOGICAL, artifacts, details
    from agent.backup import physical

    tracker.phase("base backup", None)
    result = physical.base_backup(job, target, staging, codec, tracker.advance, tracker.remaining())
    return Kind.POSTGRES_PHYSICAL, list(result.artifacts), dict(result.details)


def verify(
    repository: Repository,
    job: PostgresJob,
    manifest: Manifest,
    identities: Sequence[Any],
    tracker: Tracker,
    scratch: Path,
) -> dict[str, Any]:
    """Every artifact through every layer (checksums, decryption, decompression), with the
    kind's own check on what it decodes: `pg_restore --list` of a dump, `pg_verifybackup` of a
    base backup."""
    folder = repository.backup_path(manifest.job, manifest.id)
    if manifest.kind is Kind.POSTGRES_LOGICAL:
        tracker.phase("pg_restore --list", manifest.stored_bytes)
        entries = logical.list_contents(
            manifest,
            folder,
            identities,
            job.bin_dir,
            scratch,
            tracker.remaining(),
            tracker.advance,
        )
        return {"toc_entries": entries}
    from agent.backup import pitr

    # Extracted and checked by pg_verifybackup, never started: the recovery settings written
    # into the scratch copy (which names a config path) are never read.
    tracker.phase("pg_verifybackup", manifest.stored_bytes)
    done = pitr.restore(
        repository,
        manifest,
        scratch / "data",
        identities,
        None,
        tracker.advance,
        config_path=Path("unused.yaml"),
        bin_dir=job.bin_dir,
    )
    return {"verifybackup_seconds": round(done["verifybackup_seconds"], 3)}


def restore(
    repository: Repository,
    job: PostgresJob,
    manifest: Manifest,
    destination: Path | None,
    database: str | None,
    identities: Sequence[Any],
    tracker: Tracker,
    force: bool,
    scratch: Path,
    config_path: Path | None,
) -> dict[str, Any]:
    """A logical dump into the database `database` (created; `force`: replacing one that
    exists), or a base backup into the data directory `destination`, set to recover to the end
    of the WAL archive."""
    folder = repository.backup_path(manifest.job, manifest.id)
    if manifest.kind is Kind.POSTGRES_LOGICAL:
        if database is None:
            raise BackupError(Reason.REFUSED, "a logical restore needs --database NAME")
        tracker.phase("restoring", manifest.plain_bytes)
        result = logical.restore(
            manifest,
            folder,
            PgTarget.of(job),
            database,
            identities,
            job.jobs,
            tracker.advance,
            tracker.remaining(),
            create=True,
            clean=force,
            scratch=scratch,
        )
        return dataclasses.asdict(result)
    if destination is None:
        raise BackupError(Reason.REFUSED, "a physical restore needs --destination DIR")
    return recover(
        repository, job, manifest, destination, identities, tracker, force, None, config_path
    )


def scratch_database(job: str, now: float) -> str:
    """A drill's scratch database name: `vigil_drill_<job>_<time>`, within 63 bytes."""
    safe = re.sub(r"[^a-z0-9_]", "_", job)[:30]
    return f"vigil_drill_{safe}_{int(now)}"


def drill(
    repository: Repository,
    job: PostgresJob,
    manifest: Manifest,
    identities: Sequence[Any],
    tracker: Tracker,
    scratch: Path,
    clock: Callable[[], float],
    config_path: Path | None,
) -> dict[str, Any]:
    """Restore the backup into a scratch database (logical) or a scratch cluster recovered to
    the end of the archive (physical), run the job's validation queries, and remove the
    scratch copy."""
    if manifest.kind is Kind.POSTGRES_PHYSICAL:
        return _physical_drill(repository, job, manifest, identities, tracker, scratch, config_path)
    target = PgTarget.of(job)
    name = scratch_database(job.name, clock())
    encoding = manifest.details.get("encoding")
    pgsql.create_scratch_database(target, name, encoding if isinstance(encoding, str) else None)
    try:
        started = time.monotonic()
        tracker.phase("restoring", manifest.plain_bytes)
        logical.restore(
            manifest,
            repository.backup_path(manifest.job, manifest.id),
            target,
            name,
            identities,
            job.jobs,
            tracker.advance,
            tracker.remaining(),
            no_owner=True,
            scratch=scratch,
        )
        restored = time.monotonic() - started
        tracker.phase("validating", None)
        results = pgsql.validate(target, name, job.drill.queries)
    finally:
        pgsql.drop_database(target, name)
    failed = [f"{query}: {why}" for query, ok, why in results if not ok]
    if failed:
        raise BackupError(Reason.VALIDATION, "; ".join(failed))
    return {
        "database": name,
        "restore_seconds": round(restored, 3),
        "queries": [query for query, _, _ in results],
    }


def _config_path(config_path: Path | None) -> Path:
    if config_path is None:
        raise BackupError(
            Reason.REFUSED,
            "recovering a physical backup needs the config file's path (for restore_command):"
            " run the agent or the command with --config",
        )
    return config_path


def recover(
    repository: Repository,
    job: PostgresJob,
    manifest: Manifest,
    destination: Path,
    identities: Sequence[Any],
    tracker: Tracker,
    force: bool,
    target: Any,
    config_path: Path | None,
) -> dict[str, Any]:
    """A base backup into the data directory `destination`, verified and checked, set to
    recover through `vigil wal-fetch` to `target` (a `pitr.RecoveryTarget`; None: the end of the
    archive) and promote. The cluster is not started."""
    from agent.backup import pitr

    tracker.phase("restoring", manifest.plain_bytes)
    return pitr.restore(
        repository,
        manifest,
        destination,
        identities,
        target,
        tracker.advance,
        config_path=_config_path(config_path),
        force=force,
        program=job.wal_program,
        bin_dir=job.bin_dir,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _physical_drill(
    repository: Repository,
    job: PostgresJob,
    manifest: Manifest,
    identities: Sequence[Any],
    tracker: Tracker,
    scratch: Path,
    config_path: Path | None,
) -> dict[str, Any]:
    """Restore into a scratch data directory, recover to the end of the archive on a free
    loopback port (archiving off: nothing reaches the production archive), run the queries
    through the cluster's socket, stop it."""
    from agent.backup import cluster, wal

    data = scratch / "data"
    recovered = recover(
        repository, job, manifest, data, identities, tracker, False, None, config_path
    )
    tracker.phase("recovering", None)
    started = cluster.start_cluster(
        data, _free_port(), job.bin_dir, timeout=tracker.remaining() or 3600
    )
    try:
        password = PgTarget.of(job).password
        target = PgTarget(
            str(started.socket_dir), started.port, job.user, job.dbname, password, job.bin_dir
        )
        tracker.phase("validating", None)
        results = pgsql.validate(target, job.dbname, job.drill.queries)
    finally:
        cluster.stop_cluster(data, job.bin_dir)
    failed = [f"{query}: {why}" for query, ok, why in results if not ok]
    if failed:
        raise BackupError(Reason.VALIDATION, "; ".join(failed))
    archive = wal.archived(repository, job.name)
    return {
        "recovered_to": recovered["target"],
        "proof": list(started.proof),
        "timeline": started.timeline,
        "queries": [query for query, _, _ in results],
        "data_time": archive.last_stored,
    }
