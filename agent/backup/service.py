"""`Backups`: every backup operation of the configured jobs, framed the same way: the job's lock,
a span, a deadline, a run recorded in the catalogue (with the failure's reason), and the kind's
own work (files, PostgreSQL logical, PostgreSQL physical).

Operations are blocking (pipelines, subprocesses) and run on the caller's thread: the CLI calls
them directly, the agent from worker threads (`agent.backup.scheduler`).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace

from agent.backup import catalogue, filesystem, keys, retention
from agent.backup.artifact import Codec
from agent.backup.catalogue import Entry, JobStatus
from agent.backup.errors import BackupError, Reason
from agent.backup.frame import Caller, Frame
from agent.backup.manifest import BackupType, Kind, Manifest, backup_id
from agent.backup.progress import Progress, Tracker
from agent.backup.repository import Repository, Space
from agent.config.backup import BackupSettings, FilesJob, PostgresJob
from agent.database import Database

Job = FilesJob | PostgresJob


def kind_of(job: Job) -> Kind:
    """The kind of backup a job makes."""
    if isinstance(job, FilesJob):
        return Kind.FILES
    return Kind.POSTGRES_PHYSICAL if job.mode == "physical" else Kind.POSTGRES_LOGICAL


class Backups:
    """The backup capability over one repository and the agent's database."""

    def __init__(
        self,
        settings: BackupSettings,
        database: Database,
        data_dir: Path,
        clock: Callable[[], float] = time.time,
        tracer: trace.Tracer | None = None,
        version: str = "",
        config_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.data_dir = data_dir
        self.clock = clock
        self.tracer = tracer or trace.get_tracer("vigil.backup")
        self.version = version
        self.config_path = config_path
        self.repository = Repository(Path(settings.repository.path))
        self.trees = filesystem.TreeCache(data_dir / "backup-trees")
        self.frame = Frame(self.repository, database, clock, self.tracer)

    @property
    def running(self) -> dict[tuple[str, str], Tracker]:
        """The operations running now in this process, by (job, operation)."""
        return self.frame.running

    # --- the jobs and their keys ----------------------------------------------------------

    def job(self, name: str) -> Job:
        """The configured job `name`; BackupError (refused) when there is none."""
        job = self.settings.job(name)
        if job is None:
            known = ", ".join(j.name for j in self.settings.jobs) or "none configured"
            raise BackupError(Reason.REFUSED, f"no backup job {name!r} ({known})")
        return job

    def codec(self, job: Job) -> Codec:
        """How the job's artifacts are encoded."""
        return keys.codec(self.settings.encryption, job)

    def identities(self, required: bool = True) -> list[Any]:
        """The age identities for reading encrypted artifacts (see `keys.identities`)."""
        return keys.identities(self.settings.encryption, required)

    # --- create ------------------------------------------------------------------------------

    def create(
        self,
        job_name: str,
        wanted: BackupType | None = None,
        progress: Progress | None = None,
        *,
        caller: Caller | None = None,
    ) -> Manifest:
        """Take a backup of `job_name` (default type: full), commit it, catalogue it."""
        job = self.job(job_name)
        wanted = wanted or BackupType.FULL
        with self.frame.operation(job.name, "backup", progress, job.timeout_seconds, caller) as (
            tracker,
            result,
        ):
            result["type"] = wanted.value
            removed = self.repository.clean_partial(job.name)
            history, _ = self.repository.scan(job.name)
            manifest = self._create(job, wanted, history, tracker)
            result.update(backup_id=manifest.id, type=manifest.type.value)
            result["details"] = {
                "manifest": manifest,
                "stored_bytes": manifest.stored_bytes,
                "cleaned_partial": removed,
            }
            return manifest
        raise AssertionError("unreachable")  # pragma: no cover

    def _create(
        self, job: Job, wanted: BackupType, history: list[Manifest], tracker: Tracker
    ) -> Manifest:
        started = self.clock()
        codec = self.codec(job)
        if isinstance(job, FilesJob):
            planned = filesystem.plan(
                wanted, history, self.trees, self.repository, self.identities(required=False)
            )
            new_id = backup_id(started, planned.type, {m.id for m in history})
            with self.repository.staged(job.name, new_id) as staging:
                artifacts, details, encoded_tree = filesystem.backup(
                    job, staging, codec, planned, tracker
                )
                manifest = Manifest(
                    new_id, job.name, Kind.FILES, planned.type,
                    planned.parent.id if planned.parent else None,
                    started, self.clock(), tuple(artifacts), details, self.version,
                )  # fmt: skip
                self.repository.commit(staging, manifest)
            self.trees.store(job.name, new_id, encoded_tree)
            return manifest
        return self._create_postgres(job, history, started, codec, tracker)

    def _create_postgres(
        self,
        job: PostgresJob,
        history: list[Manifest],
        started: float,
        codec: Codec,
        tracker: Tracker,
    ) -> Manifest:
        from agent.backup import postgres

        new_id = backup_id(started, BackupType.FULL, {m.id for m in history})
        with self.repository.staged(job.name, new_id) as staging:
            kind, artifacts, details = postgres.backup(job, staging, codec, tracker)
            manifest = Manifest(
                new_id, job.name, kind, BackupType.FULL, None, started, self.clock(),
                tuple(artifacts), details, self.version,
            )  # fmt: skip
            self.repository.commit(staging, manifest)
        return manifest

    # --- list, rescan ---------------------------------------------------------------------

    def listing(
        self,
        job: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Entry]:
        """Catalogued backups, oldest first."""
        return self.database.call(lambda db: catalogue.backups(db, job, kind, since, until))

    def rescan(self) -> tuple[int, list[str]]:
        """Rebuild the catalogue's backups from the repository's manifests: how many changed,
        and the directories whose manifests cannot be trusted."""
        self.repository.ensure()
        manifests, bad = self.repository.scan()
        changed = self.database.call(lambda db: catalogue.sync(db, manifests, None))
        return changed, [f"{b.job}/{b.id}: {b.error}" for b in bad]

    def resolve(self, job: str, backup: str | None) -> Manifest:
        """The backup `backup` of `job`, or its newest when None or `latest`."""
        self.job(job)
        if backup is None or backup == "latest":
            history, _ = self.repository.scan(job)
            if not history:
                raise BackupError(Reason.REFUSED, f"job {job} has no backup")
            return history[-1]
        return self.repository.read(job, backup)

    # --- verify ---------------------------------------------------------------------------

    def verify(
        self,
        job_name: str,
        backup: str | None = None,
        progress: Progress | None = None,
        *,
        caller: Caller | None = None,
    ) -> list[dict[str, Any]]:
        """Verify one backup (`latest`: the newest), or (None) every backup of the job:
        checksums and decryption of every artifact, and the kind's own check. Results are
        stored; the first failure is raised after every backup was tried."""
        job = self.job(job_name)
        with self.frame.operation(job.name, "verify", progress, job.timeout_seconds, caller) as (
            tracker,
            result,
        ):
            targets = (
                [self.resolve(job.name, backup)] if backup else self.repository.scan(job.name)[0]
            )
            if not targets:
                raise BackupError(Reason.REFUSED, f"job {job.name} has no backup to verify")
            identities = self.identities()
            outcomes, failure = [], None
            for manifest in targets:
                outcome: dict[str, Any] = {"id": manifest.id, "ok": True}
                try:
                    self._verify_one(job, manifest, identities, tracker)
                except BackupError as exc:
                    if exc.reason in (Reason.TIMEOUT, Reason.CANCELLED):
                        raise
                    failure = failure or exc
                    outcome.update(ok=False, reason=exc.reason.value, message=str(exc))
                outcomes.append(outcome)
                self.frame.mark(
                    functools.partial(
                        catalogue.verified,
                        job=job.name,
                        backup_id=manifest.id,
                        at=self.clock(),
                        ok=outcome["ok"],
                        message=outcome.get("message"),
                    )
                )
            result["details"] = {"backups": outcomes}
            result["backup_id"] = targets[-1].id if len(targets) == 1 else None
            if failure is not None:
                raise failure
            return outcomes
        raise AssertionError("unreachable")  # pragma: no cover

    def _verify_one(
        self, job: Job, manifest: Manifest, identities: Sequence[Any], tracker: Tracker
    ) -> None:
        if manifest.kind is Kind.FILES:
            filesystem.verify_backup(self.repository, manifest, identities, tracker)
        else:
            from agent.backup import postgres

            assert isinstance(job, PostgresJob)
            # Its own check reads every artifact through every layer: no second pass first.
            with self._scratch(job.name) as scratch:
                postgres.verify(self.repository, job, manifest, identities, tracker, scratch)

    # --- restore ----------------------------------------------------------------------------

    def restore(
        self,
        job_name: str,
        backup: str | None,
        destination: Path | None = None,
        database: str | None = None,
        force: bool = False,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Restore a backup (verified first): a files job's tree into `destination`, a logical
        dump into the database `database`, a base backup into the data directory
        `destination` (recovering to the end of the archive)."""
        job = self.job(job_name)
        with self.frame.operation(job.name, "restore", progress, job.timeout_seconds) as (
            tracker,
            result,
        ):
            manifest = self.resolve(job.name, backup)
            result["backup_id"] = manifest.id
            details = self._restore(job, manifest, destination, database, force, tracker)
            result["details"] = details
            return details
        raise AssertionError("unreachable")  # pragma: no cover

    def _restore(
        self,
        job: Job,
        manifest: Manifest,
        destination: Path | None,
        database: str | None,
        force: bool,
        tracker: Tracker,
    ) -> dict[str, Any]:
        identities = self.identities()
        if manifest.kind is Kind.FILES:
            if destination is None:
                raise BackupError(Reason.REFUSED, "a files restore needs a destination directory")
            return filesystem.restore(
                self.repository, manifest, destination, identities, tracker, force
            )
        assert isinstance(job, PostgresJob)
        from agent.backup import postgres

        with self._scratch(job.name) as scratch:
            return postgres.restore(
                self.repository,
                job,
                manifest,
                destination,
                database,
                identities,
                tracker,
                force,
                scratch,
                self.config_path,
            )

    def pitr(
        self,
        job_name: str,
        target: Any,
        destination: Path,
        force: bool = False,
        port: int | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Point-in-time recovery of a physical job: the newest base backup that ended before
        `target` (a `pitr.RecoveryTarget`) into the data directory `destination`, set to
        recover through the WAL archive and promote; started on 127.0.0.1:`port` when given
        (its log's proof lines in the result)."""
        job = self.job(job_name)
        if kind_of(job) is not Kind.POSTGRES_PHYSICAL:
            raise BackupError(Reason.REFUSED, f"job {job.name} is not a physical PostgreSQL job")
        assert isinstance(job, PostgresJob)
        with self.frame.operation(job.name, "restore", progress, job.timeout_seconds) as (
            tracker,
            result,
        ):
            from agent.backup import cluster, pitr, postgres

            history, _ = self.repository.scan(job.name)
            manifest = pitr.choose_base(history, target)
            result["backup_id"] = manifest.id
            identities = self.identities()
            details = postgres.recover(
                self.repository,
                job,
                manifest,
                destination,
                identities,
                tracker,
                force,
                target,
                self.config_path,
            )
            if port is not None:
                tracker.phase("recovering", None)
                started = cluster.start_cluster(
                    destination, port, job.bin_dir, timeout=tracker.remaining() or 3600
                )
                details.update(port=started.port, proof=list(started.proof))
            result["details"] = details
            return details
        raise AssertionError("unreachable")  # pragma: no cover

    # --- drill ------------------------------------------------------------------------------

    def drill(
        self,
        job_name: str,
        progress: Progress | None = None,
        *,
        backup: str | None = None,
        caller: Caller | None = None,
    ) -> dict[str, Any]:
        """Restore the newest backup (or `backup`) into a scratch place, check it, measure the
        recovery time (RTO) and the data's age (RPO), clean up. The result is stored on the
        backup."""
        job = self.job(job_name)
        timeout = job.drill.timeout_seconds
        with self.frame.operation(job.name, "drill", progress, timeout, caller) as (
            tracker,
            result,
        ):
            manifest = self.resolve(job.name, backup)
            result["backup_id"] = manifest.id
            began = self.clock()
            start = time.monotonic()
            try:
                details = self._drill(job, manifest, tracker)
            except BackupError as exc:
                message = str(exc)
                self.frame.mark(
                    lambda db: catalogue.drilled(
                        db, job.name, manifest.id, self.clock(), False, None, None, message
                    )
                )
                raise
            rto = time.monotonic() - start
            rpo = max(0.0, began - _data_time(manifest))
            details.update(rto_seconds=round(rto, 3), rpo_seconds=round(rpo, 3))
            self.frame.mark(
                lambda db: catalogue.drilled(
                    db, job.name, manifest.id, self.clock(), True, rto, rpo, None
                )
            )
            result["details"] = details
            return details
        raise AssertionError("unreachable")  # pragma: no cover

    def _drill(self, job: Job, manifest: Manifest, tracker: Tracker) -> dict[str, Any]:
        with self._scratch(job.name) as scratch:
            if isinstance(job, FilesJob):
                destination = scratch / "tree"
                details = filesystem.restore(
                    self.repository, manifest, destination, self.identities(), tracker
                )
                problems = filesystem.check_restored(destination, job.drill.files)
                if problems:
                    raise BackupError(Reason.VALIDATION, "; ".join(problems))
                details["checked_files"] = len(job.drill.files)
                return details
            from agent.backup import postgres

            return postgres.drill(
                self.repository,
                job,
                manifest,
                self.identities(),
                tracker,
                scratch,
                self.clock,
                self.config_path,
            )

    @contextlib.contextmanager
    def _scratch(self, job: str) -> Iterator[Path]:
        """A fresh directory under `<data_dir>/scratch` for one run, removed after it."""
        root = self.data_dir / "scratch"
        root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{job}-", dir=root))
        # A drill's scratch cluster runs as the postgres user when Vigil is root: it must get
        # through to its data directory (which it owns), though not list what is around it.
        for folder in (root, path):
            folder.chmod(0o711)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # --- prune ------------------------------------------------------------------------------

    def prune(self, job_name: str, dry_run: bool = False) -> retention.Decision:
        """Apply the job's retention: what goes and why each kept backup stays."""
        job = self.job(job_name)
        with self.frame.operation(job.name, "prune", None, job.timeout_seconds) as (
            tracker,
            result,
        ):
            history, _ = self.repository.scan(job.name)
            verified = {e.manifest.id for e in self.listing(job.name) if e.verified_ok}
            decision = retention.decide(history, job.retention, self.clock(), verified)
            result["details"] = decision.as_json()
            if dry_run:
                result["record"] = False
                return decision
            for manifest in decision.delete:
                tracker.check()
                self.repository.delete(job.name, manifest.id)
                self.frame.mark(
                    functools.partial(catalogue.remove, job=job.name, backup_id=manifest.id)
                )
            self.trees.keep_only(job.name, {m.id for m in decision.keep})
            if kind_of(job) is Kind.POSTGRES_PHYSICAL and decision.keep:
                from agent.backup import wal

                # The WAL older than the oldest kept base backup can restore nothing any more.
                oldest = decision.keep[0].details.get("wal_start")
                if isinstance(oldest, str):
                    result["details"]["wal_removed"] = len(
                        wal.cleanup(self.repository, job.name, oldest)
                    )
            return decision
        raise AssertionError("unreachable")  # pragma: no cover

    # --- status -----------------------------------------------------------------------------

    def runs(
        self, job: str | None = None, operation: str | None = None, limit: int = 100
    ) -> list[catalogue.Run]:
        """The newest recorded runs first, filtered by job and operation."""
        return self.database.call(lambda db: catalogue.runs(db, job, operation, limit))

    def status(self) -> dict[str, JobStatus]:
        """Every configured job's status, for the signals."""

        def read(db: Any) -> dict[str, JobStatus]:
            return {job.name: catalogue.status(db, job.name) for job in self.settings.jobs}

        return self.database.call(read)

    def space(self) -> Space | None:
        """The repository filesystem's space, or None before it exists."""
        try:
            return self.repository.space()
        except BackupError:
            return None


def _data_time(manifest: Manifest) -> float:
    """When the data of a backup is from: its start (a dump's snapshot, a tree's scan)."""
    value = manifest.details.get("snapshot_time", manifest.details.get("data_time"))
    return float(value) if isinstance(value, int | float) else manifest.started
