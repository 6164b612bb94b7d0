"""The backup capability's errors: each carries a closed reason, the `reason` label of
`vigil_backup_failures_total` and the basis of the CLI's exit codes."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a backup, verification, restore or drill failed."""

    SOURCE = "source"
    """The source could not be read: a missing directory, a database refusing the connection."""
    TOOL = "tool"
    """An external program (pg_dump, pg_basebackup, pg_restore, postgres) failed."""
    STORAGE = "storage"
    """The repository could not be written or read."""
    SPACE = "space"
    """The repository's filesystem is full."""
    INTEGRITY = "integrity"
    """An artifact or manifest is not what was written: checksum, truncation, tampering."""
    ENCRYPTION = "encryption"
    """No identity, or not the identity an artifact was encrypted to."""
    VALIDATION = "validation"
    """A drill's restored copy failed its queries or file checks."""
    TIMEOUT = "timeout"
    """The run outlasted the job's timeout."""
    CANCELLED = "cancelled"
    """The agent stopped while the run went on."""
    BUSY = "busy"
    """Another run of the same job holds its lock."""
    REFUSED = "refused"
    """The request itself cannot be done: a non-empty destination, an unknown backup."""
    INTERNAL = "internal"
    """A bug: anything else."""


class BackupError(Exception):
    """A backup operation failed for `reason`; the message names what and where, never a
    secret."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class IntegrityError(BackupError):
    """An artifact or manifest failed verification."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.INTEGRITY, message)
