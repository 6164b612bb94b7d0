"""Logical PostgreSQL backups: pg_dump's custom format streamed into one artifact, or its directory
format (dumped in parallel) stored as one tar; restored with pg_restore only from an artifact that
checked out; listed with `pg_restore --list` for verification.

pg_dump always runs with `--compress=0`: PG15 compresses inline with zlib in its single process,
4x slower than the artifact's zstd at the same size (research/dr.md §2.1). `pg_restore --jobs`
cannot read a pipe, so a parallel restore of a custom dump decodes it to a scratch file first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from agent.backup.artifact import Codec, pump, storage_error, verify
from agent.backup.dumpdir import untar, write_tar
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import ArtifactInfo, Kind, Manifest
from agent.backup.pgprocess import Process, remaining
from agent.backup.pgsql import (
    DatabaseState,
    Snapshot,
    create_database,
    create_scratch_database,
    database_state,
    drop_database,
    end_sessions,
    validate,
)
from agent.backup.pgtools import PgTarget, binary, run
from agent.backup.repository import Staging
from agent.config.backup import PostgresJob

__all__ = [
    "ARTIFACTS",
    "RestoreResult",
    "create_scratch_database",
    "drop_database",
    "dump",
    "dump_artifact",
    "list_contents",
    "restore",
    "tool_version",
    "validate",
]

Format = Literal["custom", "directory"]

ARTIFACTS: dict[Format, str] = {"custom": "dump", "directory": "dump.tar"}
"""The artifact's name (before the codec's suffix) per pg_dump format."""

READ_BYTES = 1 << 20
_VERSION = re.compile(r"\)\s+(\d+)(?:\.(\d+))?")

Progress = Callable[[int], None] | None


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _ticking(progress: Progress, deadline: float | None) -> Progress:
    """`progress`, also ending a decode (it runs chunk by chunk) once the deadline passed."""
    if deadline is None:
        return progress

    def tick(size: int) -> None:
        remaining(deadline)
        if progress is not None:
            progress(size)

    return tick


def _appname(what: str) -> str:
    """A name of this run's own for its program's sessions, so they can be found and ended."""
    return f"vigil-backup-{what}-{secrets.token_hex(6)}"


def tool_version(path: str) -> tuple[str, int]:
    """A PostgreSQL program's version (`15.20`) and major version (15)."""
    out = run([path, "--version"], timeout=30).stdout.decode(errors="replace")
    match = _VERSION.search(out)
    if match is None:
        raise BackupError(Reason.TOOL, f"cannot tell the version of {path}: {out.strip()!r}")
    major = int(match[1])
    return (f"{major}.{match[2]}" if match[2] else str(major)), major


def dump(
    job: PostgresJob,
    target: PgTarget,
    staging: Staging,
    codec: Codec,
    progress: Progress = None,
    timeout: float | None = None,
) -> tuple[list[ArtifactInfo], dict[str, Any]]:
    """Dump the job's database into one artifact of `staging`: its record and the details (server
    and pg_dump versions, database, its size, table count, and the snapshot's time: the recovery
    point). `progress` counts the dump's bytes before compression; nothing is left behind on
    failure."""
    deadline = _deadline(timeout)
    pg_dump = binary("pg_dump", target.bin_dir)
    version, major = tool_version(pg_dump)
    with Snapshot(target, target.dbname) as snapshot:
        server_major = snapshot.facts["server_version_num"] // 10_000
        if major < server_major:
            raise BackupError(
                Reason.TOOL,
                f"pg_dump {version} cannot dump a PostgreSQL {server_major} server"
                " (set the job's bin_dir to a newer one)",
            )
        argv = [pg_dump, "--no-password", "--compress=0", f"--snapshot={snapshot.id}"]
        appname = _appname("dump")
        env = {**target.env(target.dbname), "PGAPPNAME": appname}
        try:
            if job.format == "custom":
                info = _dump_custom(argv, env, staging, codec, progress, deadline)
            else:
                info = _dump_directory(argv, env, job.jobs, staging, codec, progress, deadline)
        except BaseException:
            # A killed pg_dump's backend waiting for a lock notices only once it gets it; queued
            # meanwhile, it holds up every later locker of the table.
            snapshot.end_sessions(appname)
            raise
        details = {
            **snapshot.facts,
            "pg_dump_version": version,
            "format": job.format,
            "jobs": job.jobs if job.format == "directory" else 1,
        }
    return [info], details


def _dump_custom(
    argv: list[str],
    env: dict[str, str],
    staging: Staging,
    codec: Codec,
    progress: Progress,
    deadline: float | None,
) -> ArtifactInfo:
    writer = staging.artifact(ARTIFACTS["custom"], codec, progress)
    try:
        process = Process([*argv, "--format=custom"], env, deadline, stdout=subprocess.PIPE)
    except BaseException:
        writer.abort()
        raise
    try:
        fd = process.stdout_fd()
        while chunk := os.read(fd, READ_BYTES):
            writer.write(chunk)
    except BaseException:
        writer.abort()
        process.stop()
        raise
    code = process.wait()
    if code != 0 or process.timed_out:
        # A killed pg_dump's output ends anywhere: it must never look like a dump.
        writer.abort()
        raise process.error(code)
    return writer.finish()


def _dump_directory(
    argv: list[str],
    env: dict[str, str],
    jobs: int,
    staging: Staging,
    codec: Codec,
    progress: Progress,
    deadline: float | None,
) -> ArtifactInfo:
    scratch = staging.scratch("pg_dump")
    try:
        command = [*argv, "--format=directory", f"--jobs={jobs}", f"--file={scratch}"]
        Process(command, env, deadline).finish()
        with staging.artifact(ARTIFACTS["directory"], codec, progress) as writer:
            write_tar(scratch, writer, deadline)
            return writer.finish()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def dump_artifact(manifest: Manifest) -> tuple[Format, ArtifactInfo]:
    """The pg_dump format and the one artifact of a logical backup's manifest."""
    if manifest.kind is not Kind.POSTGRES_LOGICAL:
        raise BackupError(Reason.REFUSED, f"backup {manifest.id} is not a logical dump")
    fmt = manifest.details.get("format")
    if fmt not in ARTIFACTS or len(manifest.artifacts) != 1:
        raise IntegrityError(f"backup {manifest.id}: format {fmt!r} or its artifacts are wrong")
    info = manifest.artifacts[0]
    if info.name != ARTIFACTS[fmt] and not info.name.startswith(ARTIFACTS[fmt] + "."):
        raise IntegrityError(f"backup {manifest.id}: {info.name} is not a {fmt} dump")
    return fmt, info


class _Feed:
    """A program's stdin as a Writable; once the program stops reading, either an error, or
    (`may_stop`) a sink that drops the rest, so the artifact is still read to its end."""

    def __init__(self, process: Process, may_stop: bool = False) -> None:
        assert process.proc.stdin is not None
        self._stdin = process.proc.stdin
        self._name = process.name
        self._may_stop = may_stop
        self.stopped = False

    def write(self, data: bytes | memoryview) -> int:
        if self.stopped:
            return len(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._stdin.fileno(), view) :]
        except BrokenPipeError:
            self.stopped = True
            if not self._may_stop:
                # A BackupError, so that pump hands it on even from inside the age decrypter.
                raise BackupError(Reason.TOOL, f"{self._name} stopped reading its input") from None
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here."""


def _feed(
    process: Process,
    path: Path,
    info: ArtifactInfo,
    identities: Sequence[Any],
    progress: Progress,
    may_stop: bool = False,
) -> None:
    """Pump the decoded artifact into the program's stdin, then wait for its success."""
    feed = _Feed(process, may_stop)
    try:
        pump(path, info, feed, identities, progress)
    except BackupError:
        code = process.stop()
        if feed.stopped and not may_stop:
            raise process.error(code) from None  # its own words say why it stopped
        raise
    except BaseException:
        process.stop()
        raise
    process.finish()


@dataclasses.dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore did."""

    database: str
    created: bool
    format: Format
    jobs: int
    plain_bytes: int


def restore(
    manifest: Manifest,
    backup_dir: Path,
    target: PgTarget,
    dbname: str,
    identities: Sequence[Any] = (),
    jobs: int = 1,
    progress: Progress = None,
    timeout: float | None = None,
    create: bool = False,
    clean: bool = False,
    no_owner: bool = False,
    scratch: Path | None = None,
) -> RestoreResult:
    """Restore a logical backup into `dbname` on the target (created when `create`); refused
    into a database with objects unless `clean`. The artifact is checked whole before pg_restore
    runs; with one job the restore is one transaction. Scratch files go under `scratch` (the
    system's temporary directory by default); `progress` counts stored bytes read."""
    if jobs < 1:
        raise BackupError(Reason.REFUSED, f"jobs must be at least 1, not {jobs}")
    fmt, info = dump_artifact(manifest)
    path = backup_dir / info.name
    deadline = _deadline(timeout)
    tick = _ticking(progress, deadline)
    pg_restore = binary("pg_restore", target.bin_dir)
    if fmt == "directory" or jobs > 1:
        _check_space(scratch, info)
    state = database_state(target, dbname)
    if state is DatabaseState.ABSENT and not create:
        raise BackupError(
            Reason.REFUSED, f"database {dbname!r} does not exist (restore with create)"
        )
    if state is DatabaseState.NOT_EMPTY and not clean:
        raise BackupError(
            Reason.REFUSED,
            f"database {dbname!r} is not empty: restore into a new database, or with clean to"
            " replace the objects the dump holds",
        )
    # `-d NAME` would read a NAME holding `=` as connection parameters.
    quoted = dbname.replace("\\", "\\\\").replace("'", "\\'")
    argv = [pg_restore, "--no-password", "--exit-on-error", f"--dbname=dbname='{quoted}'"]
    argv += ["--clean", "--if-exists"] if clean else []
    argv += ["--no-owner"] if no_owner else []
    # One transaction: a failed restore leaves the database as it was. pg_restore -j cannot.
    argv += ["--single-transaction"] if jobs == 1 else [f"--jobs={jobs}"]
    appname = _appname("restore")
    env = {**target.env(dbname), "PGAPPNAME": appname}
    encoding = manifest.details.get("encoding")

    def into_database(run_restore: Callable[[], None]) -> bool:
        created = state is DatabaseState.ABSENT
        if created:
            create_database(target, dbname, encoding if isinstance(encoding, str) else None)
        try:
            run_restore()
        except BaseException:
            end_sessions(target, appname)  # as in `dump`: none may stay queued for a lock
            if created:  # leave nothing half-made behind; the restore's error is the one to see
                with contextlib.suppress(BackupError):
                    drop_database(target, dbname)
            raise
        return created

    if fmt == "custom" and jobs == 1:
        verify(path, info, identities, _ticking(None, deadline))

        def piped() -> None:
            process = Process(argv, env, deadline, stdin=subprocess.PIPE)
            _feed(process, path, info, identities, tick)

        created = into_database(piped)
    else:
        with tempfile.TemporaryDirectory(prefix="vigil-restore-", dir=scratch) as tmp:
            source = Path(tmp) / "dump"
            if fmt == "custom":
                _decode_file(path, info, identities, source, tick)
            else:
                untar(path, info, identities, source, tick)
            created = into_database(lambda: Process([*argv, str(source)], env, deadline).finish())
    return RestoreResult(dbname, created, fmt, jobs, info.plain_bytes)


def _check_space(scratch: Path | None, info: ArtifactInfo) -> None:
    folder = scratch if scratch is not None else Path(tempfile.gettempdir())
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise storage_error(exc, f"cannot use {folder} for scratch files") from None
    if free < info.plain_bytes:
        raise BackupError(
            Reason.SPACE,
            f"{folder} has {free} bytes free; the decoded dump needs {info.plain_bytes}",
        )


def _decode_file(
    path: Path, info: ArtifactInfo, identities: Sequence[Any], dest: Path, progress: Progress
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(dest, flags, 0o600), "wb") as out:
        pump(path, info, out, identities, progress)


def list_contents(
    manifest: Manifest,
    backup_dir: Path,
    identities: Sequence[Any] = (),
    bin_dir: str | None = None,
    scratch: Path | None = None,
    timeout: float | None = None,
    progress: Progress = None,
) -> int:
    """`pg_restore --list` over the decoded dump: the number of its table-of-contents entries.
    The whole artifact is read and checked; a corrupt or unreadable dump raises."""
    fmt, info = dump_artifact(manifest)
    path = backup_dir / info.name
    deadline = _deadline(timeout)
    tick = _ticking(progress, deadline)
    pg_restore = binary("pg_restore", bin_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    with tempfile.TemporaryFile(dir=scratch) as listing:
        if fmt == "custom":
            process = Process(
                [pg_restore, "--list"],
                env,
                deadline,
                stdin=subprocess.PIPE,
                stdout=listing.fileno(),
            )
            # pg_restore may stop reading once it has the table of contents.
            _feed(process, path, info, identities, tick, may_stop=True)
        else:
            with tempfile.TemporaryDirectory(prefix="vigil-list-", dir=scratch) as tmp:
                source = Path(tmp) / "dump"
                untar(path, info, identities, source, tick, wanted=frozenset({"toc.dat"}))
                Process(
                    [pg_restore, "--list", str(source)], env, deadline, stdout=listing.fileno()
                ).finish()
        listing.seek(0)
        return sum(1 for line in listing if line.strip() and not line.startswith(b";"))
