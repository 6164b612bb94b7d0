"""Signals of backups, verifications, restores, drills and the WAL archive (`agent.backup`).

The label is `backup_job`, not `job`: Prometheus gives every scraped series its own `job` label.
"""

from __future__ import annotations

from agent.telemetry.catalogue.model import Instrument, Signal

JOB = ("backup_job",)


def _signal(
    name: str,
    instrument: Instrument,
    unit: str,
    description: str,
    *labels: str,
    informational: bool = False,
) -> Signal:
    return Signal(
        name,
        instrument,
        unit,
        description,
        labels,
        informational=informational,
        scope="backup",
    )


BACKUP: tuple[Signal, ...] = (
    _signal(
        "vigil.backup.job.info",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "1 for each configured backup job, with its kind (files, postgres_logical, "
        "postgres_physical): the set that must have backups.",
        "backup_job",
        "kind",
    ),
    _signal(
        "vigil.backup.last_success_timestamp",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "When the last successful run of an operation (backup, verify, drill) of a job ended.",
        "backup_job",
        "operation",
    ),
    _signal(
        "vigil.backup.last_outcome",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "1 if the last run of an operation (backup, verify, restore, drill, prune) of a job "
        "succeeded, 0 if it failed.",
        "backup_job",
        "operation",
    ),
    _signal(
        "vigil.backup.last_duration",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Duration of the last successful backup of a job, by backup type.",
        "backup_job",
        "type",
    ),
    _signal(
        "vigil.backup.last_size",
        Instrument.OBSERVABLE_GAUGE,
        "By",
        "Bytes stored in the repository by the last successful backup of a job, by type.",
        "backup_job",
        "type",
    ),
    _signal(
        "vigil.backup.last_source_size",
        Instrument.OBSERVABLE_GAUGE,
        "By",
        "Bytes read from the source (before compression) by the last successful backup, by type.",
        "backup_job",
        "type",
        informational=True,
    ),
    _signal(
        "vigil.backup.failures",
        Instrument.OBSERVABLE_COUNTER,
        "{run}",
        "Failed runs by job, operation and reason (source, tool, storage, space, integrity, "
        "encryption, validation, timeout, cancelled, refused, internal); a run turned away "
        "because the job was busy is not one.",
        "backup_job",
        "operation",
        "reason",
    ),
    _signal(
        "vigil.backup.drill.rto",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Recovery time measured by the last successful drill of a job: restore, recovery and "
        "validation, from start to a usable copy.",
        "backup_job",
    ),
    _signal(
        "vigil.backup.drill.rpo",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Age of the data the last successful drill recovered, at the drill's start.",
        "backup_job",
    ),
    _signal(
        "vigil.backup.in_progress",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "1 while an operation of a job runs in this agent.",
        "backup_job",
        "operation",
        informational=True,
    ),
    _signal(
        "vigil.backup.backups",
        Instrument.OBSERVABLE_GAUGE,
        "{backup}",
        "Backups of a job in the repository.",
        "backup_job",
    ),
    _signal(
        "vigil.backup.repository.free",
        Instrument.OBSERVABLE_GAUGE,
        "By",
        "Free bytes on the repository's filesystem (for unprivileged writers).",
    ),
    _signal(
        "vigil.backup.repository.capacity",
        Instrument.OBSERVABLE_GAUGE,
        "By",
        "Size of the repository's filesystem.",
    ),
    _signal(
        "vigil.backup.wal.archived",
        Instrument.OBSERVABLE_COUNTER,
        "{segment}",
        "WAL files the cluster of a physical job archived (pg_stat_archiver.archived_count).",
        "backup_job",
    ),
    _signal(
        "vigil.backup.wal.failed",
        Instrument.OBSERVABLE_COUNTER,
        "{attempt}",
        "Failed archive_command runs of the cluster of a physical job "
        "(pg_stat_archiver.failed_count).",
        "backup_job",
    ),
    _signal(
        "vigil.backup.wal.last_archived_age",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Seconds since the cluster of a physical job last archived a WAL file.",
        "backup_job",
    ),
    _signal(
        "vigil.backup.wal.pending",
        Instrument.OBSERVABLE_GAUGE,
        "{segment}",
        "WAL files waiting for archive_command (.ready files in pg_wal/archive_status).",
        "backup_job",
    ),
)
