"""The repository: a directory of backups, each a directory of artifacts with its manifest.

A backup is written under `partial/`, every file fsynced, its manifest written last, and only then
renamed into `backups/<job>/<id>/`: a backup without a manifest under `backups/` never exists, and
whatever a crash left under `partial/` is removed by the job's next run. Deleting renames the
backup out of `backups/` first, so a half-deleted backup never looks whole either. One run per job
at a time holds the job's lock (a `flock`, released by the kernel when a process dies), shared by
every process using the repository: the agent and the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.backup.artifact import ArtifactWriter, Codec, fsync_dir, storage_error
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import ID_PATTERN, JOB_PATTERN, Manifest

MANIFEST = "manifest.json"
MARKER = "VIGIL-REPOSITORY"
MARKER_TEXT = "vigil backup repository, format 1\n"


@dataclasses.dataclass(frozen=True, slots=True)
class Unreadable:
    """A backup directory whose manifest cannot be trusted."""

    job: str
    id: str
    error: str


@dataclasses.dataclass(frozen=True, slots=True)
class Space:
    """The repository filesystem's free and total bytes."""

    free_bytes: int
    total_bytes: int


class Staging:
    """A backup being written: artifacts go into its directory until `Repository.commit`."""

    def __init__(self, path: Path, job: str, backup_id: str) -> None:
        self.path = path
        self.job = job
        self.id = backup_id

    def artifact(
        self, name: str, codec: Codec, progress: Callable[[int], None] | None = None
    ) -> ArtifactWriter:
        """A writer for the new artifact `name` + the codec's suffix."""
        return ArtifactWriter(self.path / (name + codec.suffix()), codec, progress)

    def scratch(self, name: str) -> Path:
        """A path inside the staging directory for a tool's raw output, never committed."""
        return self.path / f".scratch-{name}"


class Repository:
    """A local directory holding backups; the interface leaves room for object storage."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def display(self) -> str:
        """How messages name the repository."""
        return str(self.root)

    def ensure(self) -> None:
        """Create the layout (once), or check that an existing directory is a repository."""
        marker = self.root / MARKER
        try:
            if marker.exists():
                return
            self.root.mkdir(parents=True, exist_ok=True)
            if any(
                p.name not in {"backups", "partial", "locks", "wal"} for p in self.root.iterdir()
            ):
                raise BackupError(
                    Reason.REFUSED,
                    f"{self.root} holds other files and no {MARKER}: not a repository",
                )
            owner = self.root.stat()
            for sub in ("backups", "partial", "locks", "wal"):
                (self.root / sub).mkdir(exist_ok=True)
                if os.geteuid() == 0:
                    # The layout belongs to whoever owns the repository: a directory made for
                    # the postgres user gets a `wal/` its archive_command can write into.
                    os.chown(self.root / sub, owner.st_uid, owner.st_gid)
            tmp = self.root / f".{MARKER}.tmp"
            tmp.write_text(MARKER_TEXT)
            os.replace(tmp, marker)
            fsync_dir(self.root)
        except OSError as exc:
            raise storage_error(exc, f"cannot prepare the repository {self.root}") from None

    @contextlib.contextmanager
    def lock(self, job: str) -> Iterator[None]:
        """Hold the job's lock; BackupError (busy) when another run holds it."""
        path = self.root / "locks" / f"{_job(job)}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise storage_error(exc, f"cannot open {path}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackupError(Reason.BUSY, f"job {job} is already running") from None
            yield
        finally:
            os.close(fd)

    def stage(self, job: str, backup_id: str) -> Staging:
        """A fresh staging directory for backup `backup_id` of `job`."""
        path = self.root / "partial" / _job(job) / backup_id
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise storage_error(exc, f"cannot create {path}") from None
        return Staging(path, job, backup_id)

    @contextlib.contextmanager
    def staged(self, job: str, backup_id: str) -> Iterator[Staging]:
        """`stage`, and `discard` if the block raises (before or after its `commit`)."""
        staging = self.stage(job, backup_id)
        try:
            yield staging
        except BaseException:
            self.discard(staging)
            raise

    def commit(self, staging: Staging, manifest: Manifest) -> Path:
        """Seal the staged backup with `manifest` and move it into place, durably."""
        final = self.backup_path(staging.job, staging.id)
        try:
            for scratch in staging.path.glob(".scratch-*"):
                _remove(scratch)
            tmp = staging.path / f".{MANIFEST}.tmp"
            with open(tmp, "wb") as file:
                file.write(manifest.to_json())
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, staging.path / MANIFEST)
            fsync_dir(staging.path)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging.path, final)
            fsync_dir(final.parent)
            fsync_dir(staging.path.parent)
        except OSError as exc:
            raise storage_error(exc, f"cannot seal backup {staging.id}") from None
        return final

    def discard(self, staging: Staging) -> None:
        """Remove a staged backup that failed."""
        _remove(staging.path)

    def clean_partial(self, job: str) -> list[str]:
        """Remove what interrupted runs of `job` left (call with the job's lock held)."""
        parent = self.root / "partial" / _job(job)
        removed = []
        if parent.is_dir():
            for leftover in sorted(parent.iterdir()):
                _remove(leftover)
                removed.append(leftover.name)
        return removed

    def backup_path(self, job: str, backup_id: str) -> Path:
        """The directory of a committed backup."""
        if not ID_PATTERN.match(backup_id):
            raise BackupError(Reason.REFUSED, f"{backup_id!r} is not a backup id")
        return self.root / "backups" / _job(job) / backup_id

    def read(self, job: str, backup_id: str) -> Manifest:
        """The manifest of a committed backup; IntegrityError when missing or not trustworthy,
        or when it names another backup than its directory."""
        path = self.backup_path(job, backup_id) / MANIFEST
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise BackupError(Reason.REFUSED, f"no backup {backup_id} of job {job}") from None
        except OSError as exc:
            raise storage_error(exc, f"cannot read {path}") from None
        manifest = Manifest.from_json(raw)
        if manifest.id != backup_id or manifest.job != job:
            raise IntegrityError(f"{path} describes {manifest.job}/{manifest.id}")
        return manifest

    def scan(self, job: str | None = None) -> tuple[list[Manifest], list[Unreadable]]:
        """Every committed backup (of `job`, or of all jobs), oldest first, and the directories
        whose manifests cannot be trusted."""
        found: list[Manifest] = []
        bad: list[Unreadable] = []
        top = self.root / "backups"
        if not top.is_dir():
            return found, bad
        jobs = [job] if job is not None else sorted(p.name for p in top.iterdir() if p.is_dir())
        for name in jobs:
            folder = top / _job(name)
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                if not ID_PATTERN.match(entry.name):
                    continue
                try:
                    found.append(self.read(name, entry.name))
                except BackupError as exc:
                    bad.append(Unreadable(name, entry.name, str(exc)))
        found.sort(key=lambda m: (m.started, m.id))
        return found, bad

    def delete(self, job: str, backup_id: str) -> None:
        """Remove a committed backup: out of `backups/` at once, then its files."""
        path = self.backup_path(job, backup_id)
        trash = self.root / "partial" / _job(job) / f"deleting-{backup_id}"
        try:
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, trash)
            fsync_dir(path.parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(exc, f"cannot delete backup {backup_id}") from None
        _remove(trash)

    def space(self) -> Space:
        """Free and total bytes of the repository's filesystem."""
        try:
            stat = os.statvfs(self.root)
        except OSError as exc:
            raise storage_error(exc, f"cannot stat {self.root}") from None
        return Space(stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize)


def _job(job: str) -> str:
    if not JOB_PATTERN.match(job):
        raise BackupError(Reason.REFUSED, f"{job!r} is not a job name")
    return job


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
