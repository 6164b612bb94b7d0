"""The backup signals: observable instruments over a snapshot of the catalogue, the repository's
space and the WAL archivers, which the scheduler refreshes (no query runs at collection)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agent.backup.catalogue import JobStatus
from agent.backup.repository import Space
from agent.telemetry.catalogue import CATALOGUE
from agent.telemetry.instruments import Callback, create_instruments

OPERATIONS = ("backup", "verify", "restore", "drill", "prune")
SUCCESS_OPERATIONS = ("backup", "verify", "drill")


@dataclasses.dataclass(frozen=True, slots=True)
class Archiver:
    """What pg_stat_archiver says of a physical job's cluster."""

    archived: int
    failed: int
    last_archived_age: float | None
    pending: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the signals publish, read at one time."""

    kinds: dict[str, str] = dataclasses.field(default_factory=dict)
    jobs: dict[str, JobStatus] = dataclasses.field(default_factory=dict)
    space: Space | None = None
    archivers: dict[str, Archiver] = dataclasses.field(default_factory=dict)
    running: frozenset[tuple[str, str]] = frozenset()


def observe(meter: Meter, snapshot: Callable[[], Snapshot]) -> None:
    """Create the backup instruments on `meter`, each reading the latest `snapshot()`."""

    def per_job(
        read: Callable[[str, JobStatus], Iterable[tuple[float, dict[str, Any]]]],
    ) -> Callback:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            for job, status in snapshot().jobs.items():
                for value, labels in read(job, status):
                    yield Observation(value, {"backup_job": job, **labels})

        return callback

    def info(_: CallbackOptions) -> Iterable[Observation]:
        for job, kind in snapshot().kinds.items():
            yield Observation(1, {"backup_job": job, "kind": kind})

    def last_success(job: str, status: JobStatus) -> Iterable[tuple[float, dict[str, Any]]]:
        for operation in SUCCESS_OPERATIONS:
            if operation in status.last_success:
                yield status.last_success[operation], {"operation": operation}

    def last_outcome(job: str, status: JobStatus) -> Iterable[tuple[float, dict[str, Any]]]:
        for operation, run in status.last_run.items():
            yield int(run.ok), {"operation": operation}

    def by_type(read: Callable[[Any], float]) -> Callback:
        def values(job: str, status: JobStatus) -> Iterable[tuple[float, dict[str, Any]]]:
            for backup_type, entry in status.last_backup.items():
                yield read(entry.manifest), {"type": backup_type}

        return per_job(values)

    def failures(job: str, status: JobStatus) -> Iterable[tuple[float, dict[str, Any]]]:
        for (operation, reason), count in status.failures.items():
            yield count, {"operation": operation, "reason": reason}

    def drill(read: Callable[[JobStatus], float | None]) -> Callback:
        def values(job: str, status: JobStatus) -> Iterable[tuple[float, dict[str, Any]]]:
            value = read(status)
            if value is not None:
                yield value, {}

        return per_job(values)

    def in_progress(_: CallbackOptions) -> Iterable[Observation]:
        current = snapshot()
        for job in current.kinds:
            for operation in OPERATIONS:
                running = (job, operation) in current.running
                yield Observation(int(running), {"backup_job": job, "operation": operation})

    def space(read: Callable[[Space], int]) -> Callback:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            found = snapshot().space
            if found is not None:
                yield Observation(read(found))

        return callback

    def archiver(read: Callable[[Archiver], float | None]) -> Callback:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            for job, status in snapshot().archivers.items():
                value = read(status)
                if value is not None:
                    yield Observation(value, {"backup_job": job})

        return callback

    create_instruments(
        meter,
        [s.name for s in CATALOGUE if s.scope == "backup"],
        {
            "vigil.backup.job.info": [info],
            "vigil.backup.last_success_timestamp": [per_job(last_success)],
            "vigil.backup.last_outcome": [per_job(last_outcome)],
            "vigil.backup.last_duration": [by_type(lambda m: m.duration)],
            "vigil.backup.last_size": [by_type(lambda m: m.stored_bytes)],
            "vigil.backup.last_source_size": [by_type(lambda m: m.plain_bytes)],
            "vigil.backup.failures": [per_job(failures)],
            "vigil.backup.drill.rto": [drill(lambda s: s.drill_rto)],
            "vigil.backup.drill.rpo": [drill(lambda s: s.drill_rpo)],
            "vigil.backup.in_progress": [in_progress],
            "vigil.backup.backups": [per_job(lambda job, s: [(s.backups, {})])],
            "vigil.backup.repository.free": [space(lambda s: s.free_bytes)],
            "vigil.backup.repository.capacity": [space(lambda s: s.total_bytes)],
            "vigil.backup.wal.archived": [archiver(lambda a: a.archived)],
            "vigil.backup.wal.failed": [archiver(lambda a: a.failed)],
            "vigil.backup.wal.last_archived_age": [archiver(lambda a: a.last_archived_age)],
            "vigil.backup.wal.pending": [archiver(lambda a: a.pending)],
        },
    )
