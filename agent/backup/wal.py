"""The WAL archive of a physical job: PostgreSQL's `archive_command` pushes each WAL file into
it and `restore_command` fetches them back, every file compressed, encrypted and checked like
any other artifact.

Layout: `<repository>/wal/<job>/<first 16 hex digits>/` for segments, their `.backup` labels and
`.partial` files (one directory per timeline and "log" id, so at most 256 segments of 16 MiB
each), and `<repository>/wal/<job>/` itself for `.history` files. A stored file is named

    <WAL name>-<plain bytes>-<plain SHA-256>-<stored SHA-256>-<key>.<zst|gz|raw>[.age]

(`key` is the recipient set's id, or `plain`): the name alone says what the file must decode to,
so no index or sidecar has to be kept consistent with it, one rename publishes it whole, and
whether a re-pushed file is identical is known without decrypting anything (the archiving host
holds only public keys). A file is written under a dot-name, fsynced, renamed into place and its
directory fsynced before `push` returns. Pushes of one job take the job's WAL lock around the
check-then-rename, so two pushers of the same name cannot both win.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.backup.artifact import (
    CHUNK,
    ArtifactWriter,
    Codec,
    fsync_dir,
    pump,
    storage_error,
)
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import JOB_PATTERN, ArtifactInfo, Compression
from agent.backup.repository import Repository
from agent.backup.walnames import (
    DEFAULT_SEGMENT_BYTES,
    Segment,
    cleanup_key,
    history_timeline,
    is_wal_name,
    missing,
    parse_segment,
)

_STORED = re.compile(
    r"^(?P<wal>[0-9A-F.a-z]+)-(?P<plain>\d{1,12})-(?P<plain_sha>[0-9a-f]{64})"
    r"-(?P<sha>[0-9a-f]{64})-(?P<key>[0-9a-f]{16}|plain)\.(?P<ext>zst|gz|raw)(?P<age>\.age)?$"
)
_EXT = {"zstd": "zst", "gzip": "gz", "none": "raw"}
_COMPRESSION: dict[str, Compression] = {"zst": "zstd", "gz": "gzip", "raw": "none"}
_LOCK = ".lock"


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """A WAL file in the archive, as its name describes it."""

    wal: str
    path: Path
    plain_bytes: int
    plain_sha256: str
    info: ArtifactInfo

    @classmethod
    def parse(cls, path: Path) -> Stored | None:
        """The stored file `path` described, or None when its name is not one of ours."""
        match = _STORED.match(path.name)
        if match is None or not is_wal_name(match["wal"]):
            return None
        key = match["key"]
        info = ArtifactInfo(
            name=path.name,
            plain_bytes=int(match["plain"]),
            stored_bytes=-1,  # replaced by the file's size: the name cannot hold its own size
            sha256=match["sha"],
            compression=_COMPRESSION[match["ext"]],
            key_id=None if key == "plain" else f"age:{key}",
        )
        return cls(match["wal"], path, int(match["plain"]), match["plain_sha"], info)


@dataclasses.dataclass(frozen=True, slots=True)
class TimelineRange:
    """The segments of one timeline in the archive."""

    timeline: int
    first: str
    last: str
    count: int
    missing: tuple[str, ...]
    """Segments absent between first and last: a restore cannot cross them."""


@dataclasses.dataclass(frozen=True, slots=True)
class Archived:
    """What the archive of a job holds: segment ranges per timeline, history and label files."""

    timelines: tuple[TimelineRange, ...]
    histories: tuple[str, ...]
    backup_labels: tuple[str, ...]
    stored_bytes: int
    last_stored: float | None
    """When the newest file was stored (its mtime), None for an empty archive."""


def job_dir(repository: Repository, job: str) -> Path:
    """The directory of `job`'s WAL archive."""
    if not JOB_PATTERN.match(job):
        raise BackupError(Reason.REFUSED, f"{job!r} is not a job name")
    return repository.root / "wal" / job


def _directory(repository: Repository, job: str, wal: str) -> Path:
    """The folder a WAL file of `job` is stored in."""
    base = job_dir(repository, job)
    return base if wal.endswith(".history") else base / wal[:16]


def find(repository: Repository, job: str, wal: str) -> Stored | None:
    """The stored copy of WAL file `wal`, or None; IntegrityError when there are several."""
    if not is_wal_name(wal):
        raise BackupError(Reason.REFUSED, f"{wal!r} is not a WAL file name")
    folder = _directory(repository, job, wal)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(wal + "-")]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error(exc, f"cannot list {folder}") from None
    found = [s for s in (Stored.parse(folder / n) for n in names) if s and s.wal == wal]
    if len(found) > 1:
        raise IntegrityError(f"the archive holds {len(found)} different copies of {wal}")
    return found[0] if found else None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the WAL lock of `folder` (a flock, released by the kernel if we die)."""
    # Read-only and 0644: flock needs no write access, so whoever pushes next (the postgres user
    # after an operator's push as root) can take the lock too.
    fd = os.open(folder / _LOCK, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a rename: waiting is brief
        yield
    finally:
        os.close(fd)


def _makedirs(path: Path) -> None:
    """Create `path` and its missing parents, each parent's entry made durable."""
    missing_dirs = []
    probe = path
    while not probe.exists():
        missing_dirs.append(probe)
        probe = probe.parent
    for directory in reversed(missing_dirs):
        with contextlib.suppress(FileExistsError):  # another pusher made it meanwhile
            directory.mkdir()
        fsync_dir(directory.parent)


def push(repository: Repository, job: str, wal_file: Path, codec: Codec) -> None:
    """Store `wal_file` durably in `job`'s archive; a file of that name already archived with the
    same content is success (PostgreSQL re-archives after a crash), with other content an
    IntegrityError (two clusters archiving into one job, or a corrupt segment)."""
    wal = wal_file.name
    if not is_wal_name(wal):
        raise BackupError(Reason.REFUSED, f"{wal!r} is not a WAL file name")
    folder = _directory(repository, job, wal)
    try:
        _makedirs(folder)
    except OSError as exc:
        raise storage_error(exc, f"cannot create {folder}") from None
    temp = folder / f".tmp-{wal}-{secrets.token_hex(6)}"
    digest = hashlib.sha256()
    try:
        source = open(wal_file, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BackupError(Reason.SOURCE, f"cannot read {wal_file}: {exc.strerror}") from None
    with source, ArtifactWriter(temp, codec) as writer:
        buffer = bytearray(CHUNK * 8)
        view = memoryview(buffer)
        while True:
            try:
                size = source.readinto(buffer)
            except OSError as exc:
                raise BackupError(
                    Reason.SOURCE, f"cannot read {wal_file}: {exc.strerror}"
                ) from None
            if not size:
                break
            digest.update(view[:size])
            writer.write(view[:size])
        info = writer.finish()
    key = codec.key_id.removeprefix("age:") if codec.key_id else "plain"
    age = ".age" if codec.recipients else ""
    final_name = (
        f"{wal}-{info.plain_bytes}-{digest.hexdigest()}-{info.sha256}-{key}"
        f".{_EXT[codec.compression]}{age}"
    )
    try:
        with _locked(folder):
            existing = find(repository, job, wal)
            if existing is not None:
                if (existing.plain_bytes, existing.plain_sha256) == (
                    info.plain_bytes,
                    digest.hexdigest(),
                ):
                    return
                raise IntegrityError(
                    f"the archive already holds a different {wal}"
                    f" ({existing.plain_bytes} bytes, SHA-256 {existing.plain_sha256[:16]}...)"
                )
            os.rename(temp, folder / final_name)
            fsync_dir(folder)
    except OSError as exc:
        raise storage_error(exc, f"cannot store {wal}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


class _HashingFile:
    """The destination file, hashed as the decoded bytes reach it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        """Hash, count and write all of `data`."""
        view = memoryview(data)
        self.hash.update(view)
        self.size += len(view)
        while view:
            view = view[os.write(self.fd, view) :]
        return len(data)


def fetch(
    repository: Repository, job: str, wal: str, destination: Path, identities: Sequence[Any] = ()
) -> bool:
    """Decode archived `wal` into `destination` (written under a temporary name, renamed when
    every check passed); False when the archive does not hold it. Raises IntegrityError or
    BackupError on any other doubt: recovery must then stop, not end."""
    stored = find(repository, job, wal)
    if stored is None:
        return False
    try:
        size = stored.path.stat().st_size
    except FileNotFoundError:
        return False  # removed by cleanup since it was listed
    except OSError as exc:
        raise storage_error(exc, f"cannot read {stored.path}") from None
    info = dataclasses.replace(stored.info, stored_bytes=size)
    temp = destination.with_name(f".{destination.name}.vigil-{secrets.token_hex(4)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise storage_error(exc, f"cannot create {temp}") from None
    try:
        out = _HashingFile(fd)
        try:
            pump(stored.path, info, out, identities)
        finally:
            os.close(fd)
        if (out.size, out.hash.hexdigest()) != (stored.plain_bytes, stored.plain_sha256):
            raise IntegrityError(f"{wal} decoded to other bytes than were archived")
        # No fsync: PostgreSQL reads the file at once, and a crash restarts the fetch anyway.
        os.rename(temp, destination)
    except OSError as exc:
        raise storage_error(exc, f"cannot write {destination}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return True


def _stored_files(repository: Repository, job: str) -> Iterator[Stored]:
    """Every stored WAL file of `job`, folder by folder in name order."""
    base = job_dir(repository, job)
    if not base.is_dir():
        return
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            for inner in sorted(os.listdir(entry.path)):
                stored = Stored.parse(Path(entry.path) / inner)
                if stored is not None:
                    yield stored
        else:
            stored = Stored.parse(Path(entry.path))
            if stored is not None:
                yield stored


def archived(
    repository: Repository, job: str, segment_bytes: int = DEFAULT_SEGMENT_BYTES
) -> Archived:
    """The archive's first and last segment (and the gaps) of each timeline, its history files
    and backup labels."""
    segments: list[Segment] = []
    histories: list[str] = []
    labels: list[str] = []
    total = 0
    newest: float | None = None
    try:
        for stored in _stored_files(repository, job):
            try:
                stat = stored.path.stat()
            except FileNotFoundError:
                continue  # removed by a cleanup meanwhile
            total += stat.st_size
            newest = stat.st_mtime if newest is None else max(newest, stat.st_mtime)
            if stored.wal.endswith(".history"):
                histories.append(stored.wal)
            elif stored.wal.endswith(".backup"):
                labels.append(stored.wal)
            elif not stored.wal.endswith(".partial"):
                segments.append(parse_segment(stored.wal, segment_bytes))
    except OSError as exc:
        raise storage_error(exc, f"cannot list the WAL archive of {job}") from None
    except ValueError as exc:  # a segment number the segment size cannot have
        raise IntegrityError(f"the WAL archive of {job} holds {exc}") from None
    ranges = []
    gaps = missing(segments)
    for timeline in sorted({s.timeline for s in segments}):
        mine = sorted(s for s in segments if s.timeline == timeline)
        ranges.append(
            TimelineRange(
                timeline,
                mine[0].name(segment_bytes),
                mine[-1].name(segment_bytes),
                len(mine),
                tuple(g.name(segment_bytes) for g in gaps if g.timeline == timeline),
            )
        )
    histories.sort(key=history_timeline)
    return Archived(tuple(ranges), tuple(histories), tuple(sorted(labels)), total, newest)


STALE_TEMP_SECONDS = 3600.0
"""A push's temporary file this old was left by a push that died (a push takes seconds)."""


def cleanup(
    repository: Repository, job: str, oldest_needed_wal: str, now: float | None = None
) -> list[str]:
    """Remove the archived segments, labels and partial files older than `oldest_needed_wal` (a
    segment or `.backup` name), on every timeline, as `pg_archivecleanup` does; history files
    stay. Also removes what pushes killed mid-write left (temporary files older than
    STALE_TEMP_SECONDS at `now`). Returns the WAL names removed."""
    try:
        cut = cleanup_key(oldest_needed_wal)
    except ValueError as exc:
        raise BackupError(Reason.REFUSED, str(exc)) from None
    removed = []
    touched: set[Path] = set()
    stale_before = (time.time() if now is None else now) - STALE_TEMP_SECONDS
    try:
        for temp in job_dir(repository, job).glob("*/.tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                if temp.stat().st_mtime < stale_before:
                    temp.unlink()
                    touched.add(temp.parent)
        for stored in _stored_files(repository, job):
            if stored.wal.endswith(".history") or cleanup_key(stored.wal) >= cut:
                continue
            stored.path.unlink(missing_ok=True)
            removed.append(stored.wal)
            touched.add(stored.path.parent)
        for folder in touched:
            fsync_dir(folder)
            leftovers = [n for n in os.listdir(folder) if n != _LOCK]
            if not leftovers:
                with contextlib.suppress(OSError):  # a pusher may be writing into it again
                    (folder / _LOCK).unlink(missing_ok=True)
                    folder.rmdir()
    except OSError as exc:
        raise storage_error(exc, f"cannot clean the WAL archive of {job}") from None
    return removed
