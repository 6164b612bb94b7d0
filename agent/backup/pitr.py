"""Point-in-time recovery: a physical base backup restored into an empty directory, checked by
`pg_verifybackup`, and set up to replay the WAL archive up to a time, an LSN or a named restore
point and then promote (`agent.backup.cluster` starts it and reads the proof from its log).

The restored cluster never archives (`archive_mode = off`): a drill must not write its new
timeline into the production archive. Its `restore_command` is our `wal-fetch` run by the
interpreter running this code (`python -m agent.wal_cli`), so it needs no `vigil` on PATH and
cannot be another installed version.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.backup.artifact import Plain, pump, verify
from agent.backup.cluster import append_settings
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import Kind, Manifest
from agent.backup.pgtools import binary, run
from agent.backup.physical import BASE, MANIFEST
from agent.backup.repository import Repository
from agent.backup.walnames import parse_lsn

_TAR_BUFSIZE = 1 << 16  # tarfile's stream buffer grows quadratically above this (dr.md §2)


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryTarget:
    """Where recovery stops: exactly one of a time (with its offset), an LSN, or a restore point
    made by `pg_create_restore_point`; `inclusive` keeps the transaction at the target."""

    time: datetime | None = None
    lsn: str | None = None
    name: str | None = None
    inclusive: bool = True

    def __post_init__(self) -> None:
        """Refuse none or several targets, a naive time and a malformed LSN."""
        if sum(v is not None for v in (self.time, self.lsn, self.name)) != 1:
            raise BackupError(Reason.REFUSED, "a recovery target is one of time, lsn or name")
        if self.time is not None and self.time.utcoffset() is None:
            raise BackupError(Reason.REFUSED, "a recovery target time needs its UTC offset")
        if self.lsn is not None:
            try:
                parse_lsn(self.lsn)
            except ValueError as exc:
                raise BackupError(Reason.REFUSED, str(exc)) from None
        if self.name is not None and not 0 < len(self.name) < 64:
            raise BackupError(Reason.REFUSED, "a restore point name has 1 to 63 characters")

    def settings(self) -> dict[str, str]:
        """The `recovery_target_*` settings of this target."""
        if self.time is not None:
            found = {"recovery_target_time": self.time.isoformat(sep=" ")}
        elif self.lsn is not None:
            found = {"recovery_target_lsn": self.lsn}
        else:
            found = {"recovery_target_name": str(self.name)}
        found["recovery_target_inclusive"] = "on" if self.inclusive else "off"
        return found

    def describe(self) -> str:
        """The target as a person reads it."""
        key, value = next(iter(self.settings().items()))
        return f"{key.removeprefix('recovery_target_')} {value}"


def _ended(manifest: Manifest) -> float:
    """When a backup's copy became consistent, by the server's clock when it was recorded."""
    return float(manifest.details.get("backup_end_time", manifest.ended))


def choose_base(manifests: Iterable[Manifest], target: RecoveryTarget | None) -> Manifest:
    """The newest physical backup that ended before `target` (the newest of all for a restore
    point name or no target); BackupError (refused) when the target is older than them all."""
    physical = [m for m in manifests if m.kind is Kind.POSTGRES_PHYSICAL]
    if not physical:
        raise BackupError(Reason.REFUSED, "there is no physical backup to restore")
    candidates = physical
    if target is not None and target.time is not None:
        limit = target.time.timestamp()
        candidates = [m for m in physical if _ended(m) < limit]
    elif target is not None and target.lsn is not None:
        limit = parse_lsn(target.lsn)
        candidates = [m for m in physical if parse_lsn(str(m.details["stop_lsn"])) <= limit]
    if not candidates:
        assert target is not None
        raise BackupError(
            Reason.REFUSED, f"the target {target.describe()} is older than the oldest backup"
        )
    return max(candidates, key=lambda m: (_ended(m), m.id))


def _fetch_argv(config_path: Path, job: str, program: Sequence[str] | None) -> list[str]:
    """The wal-fetch command line for `job`, without the file arguments."""
    argv = list(program) if program else [sys.executable, "-m", "agent.wal_cli"]
    return [*argv, "wal-fetch", "--config", str(config_path.absolute()), "--job", job]


def restore_command(config_path: Path, job: str, program: Sequence[str] | None = None) -> str:
    """The `restore_command` line running our wal-fetch for `job` (default program: this
    interpreter with `-m agent.wal_cli`)."""
    return " ".join(shlex.quote(a) for a in _fetch_argv(config_path, job, program)) + ' %f "%p"'


def _strict(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter, and nothing but directories and regular files: a base backup of
    a cluster without tablespaces holds no links, devices or FIFOs."""
    if not (member.isreg() or member.isdir()):
        raise IntegrityError(f"{member.name}: not a file or directory, refused")
    # The data filter would quietly strip a leading "/": pg_basebackup never writes one.
    if member.name.startswith("/") or ".." in member.name.split("/"):
        raise IntegrityError(f"{member.name}: a path outside the data directory, refused")
    return tarfile.data_filter(member, destination)


def _prepare(destination: Path, force: bool) -> None:
    """An empty destination with mode 0700; a non-empty one is emptied only when forced."""
    if destination.exists():
        entries = list(destination.iterdir())
        if entries and not force:
            raise BackupError(Reason.REFUSED, f"{destination} is not empty")
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    destination.mkdir(parents=True, exist_ok=True)
    destination.chmod(0o700)


def restore(
    repository: Repository,
    manifest: Manifest,
    destination: Path,
    identities: Sequence[Any],
    target: RecoveryTarget | None,
    progress: Callable[[int], None] | None = None,
    *,
    config_path: Path,
    force: bool = False,
    program: Sequence[str] | None = None,
    bin_dir: str | None = None,
) -> dict[str, Any]:
    """Verify, extract and check backup `manifest` into `destination`, then set it to recover
    to `target` (the end of the archive when None) and promote; returns what was done. The
    cluster is not started (see `start_cluster`)."""
    if manifest.kind is not Kind.POSTGRES_PHYSICAL:
        raise BackupError(Reason.REFUSED, f"{manifest.id} is not a physical backup")
    folder = repository.backup_path(manifest.job, manifest.id)
    _prepare(destination, force)
    try:
        return _restore(
            manifest,
            folder,
            destination,
            identities,
            target,
            progress,
            config_path,
            program,
            bin_dir,
        )
    except BaseException:
        # Half a data directory must not look like a restored one: leave it empty.
        _prepare(destination, force=True)
        raise


def _restore(
    manifest: Manifest,
    folder: Path,
    destination: Path,
    identities: Sequence[Any],
    target: RecoveryTarget | None,
    progress: Callable[[int], None] | None,
    config_path: Path,
    program: Sequence[str] | None,
    bin_dir: str | None,
) -> dict[str, Any]:
    """`restore` once the destination is ready."""
    started = time.monotonic()
    for info in manifest.artifacts:
        verify(folder / info.name, info, identities, progress)
    verified = time.monotonic()
    base = manifest.artifact(BASE)
    stored_manifest = manifest.artifact(MANIFEST)
    try:
        with (
            Plain(folder / base.name, base, identities) as stream,
            tarfile.open(fileobj=stream, mode="r|", bufsize=_TAR_BUFSIZE) as tar,  # type: ignore[call-overload]
        ):
            tar.extractall(destination, filter=_strict)  # noqa: S202 - _strict checks each member
        with open(destination / "backup_manifest", "wb") as out:
            pump(folder / stored_manifest.name, stored_manifest, out, identities)
    except tarfile.TarError as exc:
        raise IntegrityError(f"{base.name} cannot be extracted safely: {exc}") from None
    except OSError as exc:
        raise BackupError(Reason.STORAGE, f"cannot extract into {destination}: {exc}") from None
    extracted = time.monotonic()
    check_backup(destination, bool(manifest.details.get("wal_included")), bin_dir)
    checked = time.monotonic()
    command = restore_command(config_path, manifest.job, program)
    settings = {
        "restore_command": command,
        "archive_mode": "off",
        "recovery_target_action": "promote",
        **(target.settings() if target is not None else {}),
    }
    append_settings(destination, settings, f"recovery of backup {manifest.id} by Vigil")
    (destination / "recovery.signal").touch(mode=0o600)
    return {
        "backup": manifest.id,
        "target": target.describe() if target is not None else "end of the archive",
        "restore_command": command,
        "verify_seconds": verified - started,
        "extract_seconds": extracted - verified,
        "verifybackup_seconds": checked - extracted,
        "plain_bytes": manifest.plain_bytes,
    }


def check_backup(data_dir: Path, parse_wal: bool, bin_dir: str | None = None) -> None:
    """`pg_verifybackup` on an extracted base backup (every file against its manifest, and the
    backup's WAL when it holds it); IntegrityError on any difference."""
    argv = [binary("pg_verifybackup", bin_dir), "-q"]
    if not parse_wal:
        argv.append("--no-parse-wal")
    argv.append(str(data_dir))
    try:
        run(argv, timeout=3600)
    except BackupError as exc:
        if exc.reason is Reason.TOOL:
            raise IntegrityError(
                f"the restored base backup differs from its manifest: {exc}"
            ) from None
        raise
