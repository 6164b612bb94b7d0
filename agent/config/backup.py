"""Configuration of backups: the repository, encryption, and the jobs with their schedules,
retention and drills."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from cronsim import CronSim, CronSimError
from pydantic import Field, ValidationError, field_validator, model_validator

from agent.config.base import Strict
from agent.config.errors import ConfigError, describe

_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
_AGE_RECIPIENT = re.compile(r"^age1[0-9a-z]{58}$")

BackupType = Literal["full", "differential", "incremental"]
Compression = Literal["zstd", "gzip", "none"]


_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def cron_fields(value: str) -> str:
    """The five fields of a cron expression, `@daily` and friends spelled out."""
    return _ALIASES.get(value.strip().lower(), value)


def check_cron(value: str) -> str:
    """A cron expression (5 fields, or `@daily` and friends) that cronsim accepts."""
    from datetime import UTC, datetime

    try:
        next(iter(CronSim(cron_fields(value), datetime(2026, 1, 1, tzinfo=UTC))))
    except (CronSimError, StopIteration) as exc:
        msg = f"not a usable cron expression: {exc or 'it never fires'}"
        raise ValueError(msg) from None
    return value


class RepositorySettings(Strict):
    """Where artifacts and their manifests are kept: a local directory (an NFS mount or another
    disk, ideally not the one being backed up)."""

    path: str = Field(default=".vigil/backups", min_length=1)


class EncryptionSettings(Strict):
    """age encryption: artifacts are written to the public `recipients`, so the backup host needs
    no secret; verify, restore and drills read the identity (`age-keygen` output)."""

    recipients: list[str] = Field(default_factory=list, description="age1... public keys.")
    identity_file: str | None = Field(default=None, description="File of AGE-SECRET-KEY-1 lines.")
    identity_env: str | None = Field(default=None, description="Variable holding the identity.")

    @field_validator("recipients")
    @classmethod
    def _age_recipients(cls, value: list[str]) -> list[str]:
        for recipient in value:
            if not _AGE_RECIPIENT.match(recipient):
                # Never echo the value: an identity pasted here by mistake is a secret.
                msg = "each recipient must be an age X25519 public key (age1 and 58 characters)"
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _one_identity(self) -> EncryptionSettings:
        if self.identity_file is not None and self.identity_env is not None:
            msg = "identity_file and identity_env are alternatives; set one"
            raise ValueError(msg)
        return self


class RetentionSettings(Strict):
    """Which backups stay: the last `keep_last`, and the newest of each of the last `daily` days,
    `weekly` ISO weeks and `monthly` months. What a kept backup needs (its chain, a PITR window)
    always stays, and so does the newest verified backup."""

    keep_last: int = Field(default=7, ge=1, le=10_000)
    daily: int = Field(default=0, ge=0, le=10_000)
    weekly: int = Field(default=0, ge=0, le=10_000)
    monthly: int = Field(default=0, ge=0, le=10_000)


class ValidationQuery(Strict):
    """A query a drill runs on the restored database: its first column of its one row must be
    true (`SELECT count(*) > 0 FROM orders`)."""

    name: str = Field(pattern=_NAME)
    sql: str = Field(min_length=1, max_length=10_000)


class DrillSettings(Strict):
    """Restore drills: when, and what proves the restored copy good besides the checksums."""

    schedule: str | None = Field(default=None, description="Cron expression; none: only on demand.")
    files: list[str] = Field(
        default_factory=list, description="files jobs: paths that must exist in the restored tree."
    )
    queries: list[ValidationQuery] = Field(default_factory=list, description="postgres jobs.")
    timeout_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return value if value is None else check_cron(value)


class Schedules(Strict):
    """A cron expression per backup type; a type without one runs only on demand. When two fire at
    once, the larger type runs."""

    full: str | None = None
    differential: str | None = None
    incremental: str | None = None

    @field_validator("full", "differential", "incremental")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return value if value is None else check_cron(value)


class JobBase(Strict):
    """Keys every backup job accepts."""

    name: str = Field(pattern=_NAME, description="Unique; the `backup_job` label of its series.")
    schedule: Schedules = Field(default_factory=Schedules)
    timeout_seconds: float = Field(default=6 * 3600.0, gt=0, le=7 * 86_400)
    compression: Compression = "zstd"
    compression_level: int | None = Field(
        default=None, ge=1, le=19, description="Default: 3 for zstd, 6 for gzip."
    )
    threads: int = Field(default=0, ge=0, le=64, description="zstd workers; 0: one per CPU, max 4.")
    encrypt: bool = Field(default=True, description="When backup.encryption has recipients.")
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    drill: DrillSettings = Field(default_factory=DrillSettings)

    @model_validator(mode="after")
    def _level_fits(self) -> JobBase:
        level = self.compression_level
        if level is not None and self.compression == "gzip" and level > 9:
            msg = "gzip levels are 1-9"
            raise ValueError(msg)
        if level is not None and self.compression == "none":
            msg = "compression none takes no compression_level"
            raise ValueError(msg)
        return self


class FilesJob(JobBase):
    """A directory tree: streamed tar, full / differential / incremental from a per-file
    manifest."""

    kind: Literal["files"]
    source: str = Field(min_length=1, description="The directory backed up.")
    exclude: list[str] = Field(
        default_factory=list, description="Glob patterns on paths relative to source."
    )
    one_file_system: bool = Field(default=True, description="Stay on the source's filesystem.")
    rehash: bool = Field(
        default=False,
        description="Compare content hashes, not size and mtime, to find changed files.",
    )

    @model_validator(mode="after")
    def _drill_fits(self) -> FilesJob:
        if self.drill.queries:
            msg = "drill.queries are for postgres jobs; a files job checks drill.files"
            raise ValueError(msg)
        return self


class PostgresJob(JobBase):
    """A PostgreSQL database (logical: `pg_dump`) or cluster (physical: `pg_basebackup` plus
    the WAL archive, for point-in-time recovery)."""

    kind: Literal["postgres"]
    mode: Literal["logical", "physical"] = "logical"
    host: str = Field(default="127.0.0.1", min_length=1, description="Host or socket directory.")
    port: int = Field(default=5432, ge=1, le=65_535)
    user: str = Field(default="postgres", min_length=1)
    dbname: str = Field(default="postgres", min_length=1, description="logical: the database.")
    password_env: str | None = None
    format: Literal["custom", "directory"] = Field(
        default="custom", description="logical: pg_dump -Fc streamed, or -Fd with `jobs`."
    )
    jobs: int = Field(default=1, ge=1, le=64, description="pg_dump -Fd and pg_restore --jobs.")
    bin_dir: str | None = Field(default=None, description="Where pg_dump & co. are; default PATH.")
    wal_program: list[str] | None = Field(
        default=None,
        min_length=1,
        description="physical: how PostgreSQL (as its OS user) runs Vigil's WAL commands in the"
        " restore_command Vigil writes; default: this Python with `-m agent.wal_cli`.",
    )

    @model_validator(mode="after")
    def _fits(self) -> PostgresJob:
        if self.drill.files:
            msg = "drill.files are for files jobs; a postgres job checks drill.queries"
            raise ValueError(msg)
        if self.jobs > 1 and self.mode == "logical" and self.format != "directory":
            msg = "jobs > 1 needs format: directory (pg_dump -Fc cannot write in parallel)"
            raise ValueError(msg)
        if self.mode == "physical" and (self.schedule.differential or self.schedule.incremental):
            msg = "a physical job takes full base backups; the WAL archive is its increment"
            raise ValueError(msg)
        return self


BackupJob = Annotated[FilesJob | PostgresJob, Field(discriminator="kind")]


class BackupSettings(Strict):
    """Backups: where they go, how they are encrypted, and the jobs."""

    repository: RepositorySettings = Field(default_factory=RepositorySettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    jobs: list[BackupJob] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_jobs(self) -> BackupSettings:
        names = [job.name for job in self.jobs]
        if len(names) != len(set(names)):
            msg = "job names must be unique"
            raise ValueError(msg)
        return self

    def job(self, name: str) -> FilesJob | PostgresJob | None:
        """The job called `name`, if any."""
        return next((job for job in self.jobs if job.name == name), None)


def load_backup(path: str | os.PathLike[str]) -> BackupSettings:
    """Only the `backup` section of a config file, validated: for the WAL commands, which
    PostgreSQL starts for every segment (no check kind is built: a third of their run) and
    which must go on archiving even when another section of the file is broken.
    ConfigError when the file or its `backup` section cannot be used."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML ({exc})"]) from None
    section = data.get("backup", {}) if isinstance(data, dict) else None
    try:
        return BackupSettings.model_validate(section)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            located = {**error, "loc": ("backup", *error["loc"])}
            problems.append(describe(located))
        raise ConfigError(source, problems) from None
