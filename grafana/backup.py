"""The backups dashboard: jobs, verifications and drills, the WAL archive and the repository."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.frame import dashboard, section
from grafana.panels import (
    AnyPanel,
    runbook_link,
    stat_panel,
    state_timeline_panel,
    table_panel,
    thresholds,
    timeseries_panel,
    value_names,
)
from grafana.queries import sel

FAILED = "backup.md#vigilbackupfailed"
MISSING = "backup.md#vigilbackupmissing"
NEVER_SUCCEEDED = "backup.md#vigilbackupneversucceeded"
SMALLER = "backup.md#vigilbackupsmallerthanusual"
SLOWER = "backup.md#vigilbackupslowerthanusual"
VERIFICATION_FAILED = "backup.md#vigilbackupverificationfailed"
DRILL_FAILED = "backup.md#vigilbackupdrillfailed"
DRILL_OVERDUE = "backup.md#vigilbackupdrilloverdue"
WAL_FAILING = "backup.md#vigilbackupwalarchivefailing"
WAL_LAGGING = "backup.md#vigilbackupwalarchivelagging"
SPACE_LOW = "backup.md#vigilbackuprepositoryspacelow"

DAY = 86_400
# vigil_backup_last_outcome: 0 the last run failed, 1 it succeeded.
OUTCOME_NAMES = value_names(("failed", "red"), ("ok", "green"))


def _age(operation: str) -> str:
    """Seconds since the last successful run of ``operation``, per job."""
    return f"time() - {sel('vigil_backup_last_success_timestamp_seconds', operation)}"


def jobs() -> list[Sequence[AnyPanel] | builders.Row]:
    """The "Backup jobs" section: age of the last success, last outcomes, sizes, durations."""
    age = (
        table_panel(
            "Since the last successful backup",
            "Per job: time since its last successful backup ended. Over 24 hours is "
            "VigilBackupMissing; a configured job missing from this table has never succeeded.",
            "s",
            _age('operation="backup"'),
            height=8,
            hidden=("job", "operation"),
            value_column="age",
        )
        .thresholds(thresholds(("green", None), ("orange", 0.75 * DAY), ("red", DAY)))
        .links(
            [
                runbook_link("backup missing", MISSING),
                runbook_link("never succeeded", NEVER_SUCCEEDED),
            ]
        )
    )
    outcome = (
        state_timeline_panel(
            "Last backup outcome",
            "Per job: whether its last backup run succeeded (ok) or failed, over time. A failed "
            "run is VigilBackupFailed; the next successful run turns it back to ok.",
            "none",
            sel("vigil_backup_last_outcome", 'operation="backup"'),
            legend="{{backup_job}} ({{instance}})",
            span=12,
            height=8,
        )
        .mappings(OUTCOME_NAMES)
        .links([runbook_link("backup failed", FAILED)])
    )
    size = (
        timeseries_panel(
            "Backup size by type",
            "Bytes stored in the repository by each job's last successful backup, per type "
            "(full, differential, incremental). A full backup under half its 7-day average is "
            "VigilBackupSmallerThanUsual.",
            "bytes",
            sel("vigil_backup_last_size_bytes"),
            legend="{{backup_job}} {{type}}",
        )
        .min(0)
        .links([runbook_link("smaller than usual", SMALLER)])
    )
    duration = (
        timeseries_panel(
            "Backup duration by type",
            "How long each job's last successful backup took, per type. More than twice the "
            "7-day average (and over 5 minutes) is VigilBackupSlowerThanUsual.",
            "s",
            sel("vigil_backup_last_duration_seconds"),
            legend="{{backup_job}} {{type}}",
        )
        .min(0)
        .links([runbook_link("slower than usual", SLOWER)])
    )
    failures = (
        timeseries_panel(
            "Failed runs by reason",
            "Failed runs per interval by job, operation (backup, verify, restore, drill, prune) "
            "and reason (source, tool, storage, space, integrity, encryption, validation, "
            "timeout, cancelled, refused, internal).",
            "short",
            "sum by (backup_job, operation, reason) "
            f"(increase({sel('vigil_backup_failures_total')}[$__rate_interval]))",
            legend="{{backup_job}} {{operation}} {{reason}}",
        )
        .min(0)
        .links([runbook_link("backup failed", FAILED)])
    )
    stored = (
        timeseries_panel(
            "Backups in the repository",
            "Backups of each job kept in the repository: it drops when retention prunes and "
            "grows by one per successful backup.",
            "short",
            sel("vigil_backup_backups"),
            legend="{{backup_job}}",
        )
        .min(0)
        .links([runbook_link("repository space low", SPACE_LOW)])
    )
    return [section("Backup jobs"), [age, outcome], [size, duration], [failures, stored]]


def verification() -> list[Sequence[AnyPanel] | builders.Row]:
    """The "Verification and drills" section: last results, their age, RTO and RPO."""
    results = (
        state_timeline_panel(
            "Last verification and drill outcomes",
            "Per job: whether its last verification (checksums, decryption, decompression of "
            "stored backups) and its last restore drill succeeded (ok) or failed.",
            "none",
            sel("vigil_backup_last_outcome", 'operation=~"verify|drill"'),
            legend="{{backup_job}} {{operation}} ({{instance}})",
            height=8,
        )
        .mappings(OUTCOME_NAMES)
        .links(
            [
                runbook_link("verification failed", VERIFICATION_FAILED),
                runbook_link("drill failed", DRILL_FAILED),
            ]
        )
    )
    age = (
        timeseries_panel(
            "Since the last successful verification and drill",
            "Per job: time since its last successful verification and its last successful "
            "restore drill. No successful drill for 8 days is VigilBackupDrillOverdue.",
            "s",
            _age('operation=~"verify|drill"'),
            legend="{{backup_job}} {{operation}}",
            span=8,
        )
        .thresholds(thresholds(("green", None), ("red", 8 * DAY)))
        .min(0)
        .links([runbook_link("drill overdue", DRILL_OVERDUE)])
    )
    rto = (
        timeseries_panel(
            "Drill RTO",
            "Recovery time measured by each job's last successful drill: restore, recovery and "
            "validation, from start to a usable copy. Compare with the recovery time objective.",
            "s",
            sel("vigil_backup_drill_rto_seconds"),
            legend="{{backup_job}}",
            span=8,
        )
        .min(0)
        .links([runbook_link("drill failed", DRILL_FAILED)])
    )
    rpo = (
        timeseries_panel(
            "Drill RPO",
            "Age of the data each job's last successful drill recovered, at the drill's start: "
            "what a restore at that moment would have lost. Compare with the recovery point "
            "objective.",
            "s",
            sel("vigil_backup_drill_rpo_seconds"),
            legend="{{backup_job}}",
            span=8,
        )
        .min(0)
        .links([runbook_link("backup missing", MISSING)])
    )
    return [section("Verification and drills"), [results], [age, rto, rpo]]


def wal_archive() -> list[Sequence[AnyPanel] | builders.Row]:
    """The "WAL archive" section (physical PostgreSQL jobs): throughput, failures, lag."""
    archived = (
        timeseries_panel(
            "WAL files archived",
            "WAL files per second the cluster of each physical job archived "
            "(pg_stat_archiver.archived_count).",
            "ops",
            "sum by (backup_job) "
            f"(rate({sel('vigil_backup_wal_archived_total')}[$__rate_interval]))",
            legend="{{backup_job}}",
            span=6,
        )
        .min(0)
        .links([runbook_link("WAL archive lagging", WAL_LAGGING)])
    )
    failed = (
        timeseries_panel(
            "archive_command failures",
            "Failed archive_command runs per interval (pg_stat_archiver.failed_count). Failures "
            "lasting 10 minutes are VigilBackupWalArchiveFailing.",
            "short",
            "sum by (backup_job) "
            f"(increase({sel('vigil_backup_wal_failed_total')}[$__rate_interval]))",
            legend="{{backup_job}}",
            span=6,
        )
        .min(0)
        .links([runbook_link("WAL archive failing", WAL_FAILING)])
    )
    age = (
        timeseries_panel(
            "Since the last archived WAL file",
            "Seconds since each cluster last archived a WAL file. Over 15 minutes with files "
            "pending is VigilBackupWalArchiveLagging; an idle cluster ages with nothing pending.",
            "s",
            sel("vigil_backup_wal_last_archived_age_seconds"),
            legend="{{backup_job}}",
            span=6,
        )
        .thresholds(thresholds(("green", None), ("orange", 900)))
        .min(0)
        .links([runbook_link("WAL archive lagging", WAL_LAGGING)])
    )
    pending = (
        timeseries_panel(
            "WAL files pending",
            "WAL files waiting for archive_command (.ready files in pg_wal/archive_status): "
            "they stay in pg_wal on the primary until archived.",
            "short",
            sel("vigil_backup_wal_pending"),
            legend="{{backup_job}}",
            span=6,
        )
        .min(0)
        .links([runbook_link("WAL archive lagging", WAL_LAGGING)])
    )
    return [section("WAL archive"), [archived, failed, age, pending]]


def repository() -> list[Sequence[AnyPanel] | builders.Row]:
    """The "Repository" section: free share now and over time, free bytes."""
    ratio = (
        f"{sel('vigil_backup_repository_free_bytes')} "
        f"/ {sel('vigil_backup_repository_capacity_bytes')}"
    )
    now = (
        stat_panel(
            "Repository free now",
            "Share of the repository's filesystem free, per agent. Under 10 % for 15 minutes "
            "is VigilBackupRepositorySpaceLow.",
            "percentunit",
            ratio,
            legend="{{instance}}",
        )
        .thresholds(thresholds(("red", None), ("orange", 0.1), ("green", 0.2)))
        .links([runbook_link("repository space low", SPACE_LOW)])
    )
    over_time = (
        timeseries_panel(
            "Repository free share",
            "Share of the repository's filesystem free over time: backups fill it, retention "
            "(prune) frees it.",
            "percentunit",
            ratio,
            legend="{{instance}}",
            span=9,
        )
        .thresholds(thresholds(("green", None), ("red", 0.1)))
        .min(0)
        .max(1)
        .links([runbook_link("repository space low", SPACE_LOW)])
    )
    free = (
        timeseries_panel(
            "Repository free bytes",
            "Bytes free on the repository's filesystem for unprivileged writers such as the agent.",
            "bytes",
            sel("vigil_backup_repository_free_bytes"),
            legend="{{instance}}",
            span=9,
        )
        .min(0)
        .links([runbook_link("repository space low", SPACE_LOW)])
    )
    return [section("Repository"), [now, over_time, free]]


def build() -> Dashboard:
    """Vigil / Backups and recovery."""
    return dashboard(
        "vigil-backup",
        "Vigil / Backups and recovery",
        "Backup jobs: time since the last successful backup, last outcomes, sizes and durations "
        "per type, failures by reason, backups kept; verifications and restore drills with the "
        "RTO and RPO they measured; the WAL archive of physical PostgreSQL jobs; and the "
        "repository's free space.",
        [*jobs(), *verification(), *wal_archive(), *repository()],
    )
