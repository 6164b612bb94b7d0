"""Files jobs: a directory tree into a tar stream (only the files a full, differential or
incremental backup must store) plus the tree of that moment; and back, from a chain of backups,
into an empty directory, safely.

The tar holds each stored file with its directories and links, so `age -d | zstd -d | tar -x`
also works; Vigil's own restore takes metadata from the tree, not the tar headers, and writes only
what the tree lists: no member may name a path outside the destination, and nothing is ever
written through a link.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import blake3

from agent.backup import tarheader
from agent.backup.artifact import Writable
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.tree import Entry, EntryType, check_path

BLOCK = 512
READ_BYTES = 1 << 20
_ZEROS = bytes(BLOCK)


@dataclasses.dataclass(slots=True)
class Stored:
    """What writing a tar stored: files and their bytes, and files that changed meanwhile."""

    files: int = 0
    bytes: int = 0
    changed_during: int = 0
    vanished: list[str] = dataclasses.field(default_factory=list)


_KINDS = {
    EntryType.FILE: tarheader.FILE,
    EntryType.DIR: tarheader.DIRECTORY,
    EntryType.LINK: tarheader.LINK,
}
BATCH = 1 << 20
"""Small files are gathered into writes of about this size: one call into the compressor per
megabyte instead of three per file."""
_FILE = EntryType.FILE


def _header(entry: Entry, size: int) -> bytes:
    return tarheader.header(
        entry.path + ("/" if entry.type is EntryType.DIR else ""),
        _KINDS[entry.type],
        entry.mode,
        entry.uid,
        entry.gid,
        entry.mtime_ns // 1_000_000_000,
        size,
        entry.target,
    )


def write_tar(
    source: Path,
    items: Iterable[tuple[Entry, bool]],
    out: Writable,
    backup_id: str,
) -> tuple[list[Entry], Stored]:
    """Write the directories, links and the files to store (`True` beside them) of `items` as
    a pax tar into `out`, as they come (a scan can feed it while it walks); the tree of what was
    written, each stored file with its content hash and `backup_id` as holder.

    A file that vanished since it was listed is left out of the tree; one that shrank is padded
    with zeros to its listed size (and counted), so the stream stays valid and the tree says
    what was stored.
    """
    result = Stored()
    buffer = bytearray(READ_BYTES)
    view = memoryview(buffer)
    batch = bytearray()
    root = str(source)
    kept: list[Entry] = []
    for entry, needed in items:
        if entry.type is not _FILE:
            batch += _header(entry, 0)
            kept.append(entry)
            continue
        if not needed:
            kept.append(entry)
            continue
        path = f"{root}/{entry.path}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            result.vanished.append(entry.path)
            continue
        except OSError as exc:
            raise BackupError(Reason.SOURCE, f"cannot read {path}: {exc.strerror}") from None
        try:
            if entry.size < READ_BYTES:
                digest, changed = _small_file(fd, path, entry, batch, view)
            else:
                if batch:
                    out.write(memoryview(batch))
                    batch = bytearray()
                digest, changed = _large_file(fd, path, entry, out, view)
        finally:
            os.close(fd)
        if len(batch) >= BATCH:
            # Handed over, not copied: every writer here consumes what it is given at once.
            out.write(memoryview(batch))
            batch = bytearray()
        result.files += 1
        result.bytes += entry.size
        result.changed_during += changed
        kept.append(
            Entry(
                entry.path,
                entry.type,
                entry.mode,
                entry.uid,
                entry.gid,
                entry.mtime_ns,
                entry.size,
                digest,
                entry.target,
                backup_id,
            )
        )
    batch += _ZEROS * 2
    out.write(memoryview(batch))
    return kept, result


def _small_file(
    fd: int, path: str, entry: Entry, batch: bytearray, view: memoryview
) -> tuple[str, bool]:
    """A file smaller than the read buffer, read whole into `batch` with its header and padding."""
    try:
        got = os.readv(fd, [view[: entry.size + 1]])
        after = os.fstat(fd)
    except OSError as exc:
        raise BackupError(Reason.SOURCE, f"cannot read {path}: {exc.strerror}") from None
    changed = got != entry.size or after.st_mtime_ns != entry.mtime_ns
    content = view[: min(got, entry.size)]
    batch += _header(entry, entry.size)
    batch += content
    missing = entry.size - len(content)
    batch += bytes(missing + (-entry.size % BLOCK))
    digest = content_hash(content)
    if missing:
        digest.update(bytes(missing))
    return digest.hexdigest(), changed


def _large_file(
    fd: int, path: str, entry: Entry, out: Writable, view: memoryview
) -> tuple[str, bool]:
    """One file's header, content (exactly its scanned size) and padding, streamed; its SHA-256
    and whether it changed while read."""
    out.write(_header(entry, entry.size))
    digest = content_hash()
    left = entry.size
    try:
        while left:
            got = os.readv(fd, [view[: min(left, len(view))]])
            if not got:
                break
            chunk = view[:got]
            digest.update(chunk)
            out.write(chunk)
            left -= got
        grew = bool(left == 0 and os.read(fd, 1))
        after = os.fstat(fd)
    except OSError as exc:
        raise BackupError(Reason.SOURCE, f"cannot read {path}: {exc.strerror}") from None
    changed = bool(left) or grew or after.st_mtime_ns != entry.mtime_ns
    while left:
        pad = _ZEROS[: min(left, BLOCK)]
        digest.update(pad)
        out.write(pad)
        left -= len(pad)
    remainder = entry.size % BLOCK
    if remainder:
        out.write(_ZEROS[: BLOCK - remainder])
    return digest.hexdigest(), changed


def content_hash(data: bytes | memoryview = b"") -> blake3.blake3:
    """A new hash of file content: BLAKE3, a quarter of SHA-256's CPU (with SHA-256 every
    file's hash was a sixth of a backup's CPU time; benchmarks/backup.py). The artifacts
    themselves are hashed with SHA-256."""
    return blake3.blake3(data)


def hash_file(path: Path) -> str:
    """The content hash of a file (for `rehash`)."""
    digest = content_hash()
    with open(path, "rb", buffering=0) as file:
        while data := file.read(READ_BYTES):
            digest.update(data)
    return digest.hexdigest()


# --- restore -------------------------------------------------------------------------------


def check_destination(destination: Path, force: bool) -> None:
    """Refuse a destination that exists and is not an empty directory, unless `force`."""
    if not destination.exists():
        return
    if not destination.is_dir() or destination.is_symlink():
        raise BackupError(Reason.REFUSED, f"{destination} exists and is not a directory")
    if not force and any(destination.iterdir()):
        raise BackupError(
            Reason.REFUSED, f"{destination} is not empty; restore into an empty directory or force"
        )


def _open_beneath(root_fd: int, relative: str, flags: int, mode: int = 0o600) -> int:
    """Open `relative` under the directory `root_fd` one component at a time, never following
    a link (a link in the path is refused)."""
    parts = relative.split("/")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
    finally:
        os.close(fd)


def _parent_fd(root_fd: int, relative: str) -> tuple[int, str]:
    parent, _, name = relative.rpartition("/")
    if not parent:
        return os.dup(root_fd), name
    return _open_beneath(root_fd, parent, os.O_RDONLY | os.O_DIRECTORY), name


class TreeWriter:
    """Writes one tree into a destination directory: directories first, then files from each
    backup's tar, then links, then every entry's metadata (directories last, deepest first)."""

    def __init__(self, destination: Path, entries: Sequence[Entry], force: bool = False) -> None:
        self.destination = destination
        self.entries = {e.path: e for e in entries}
        self.force = force
        self.written: set[str] = set()
        self._owner = os.geteuid() == 0
        destination.mkdir(parents=True, exist_ok=True)
        self._root = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self._root >= 0:
            fd, self._root = self._root, -1
            os.close(fd)

    def directories(self) -> None:
        """Create every directory of the tree (the tree lists parents before children)."""
        for entry in self.entries.values():
            if entry.type is EntryType.DIR:
                parent, name = _parent_fd(self._root, entry.path)
                try:
                    os.mkdir(name, 0o700, dir_fd=parent)
                except FileExistsError:
                    if not self.force:
                        raise
                    # A forced restore reuses a directory, never a link or file in its place.
                    if not stat.S_ISDIR(
                        os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
                    ):
                        raise BackupError(
                            Reason.REFUSED, f"{entry.path} exists and is not a directory"
                        ) from None
                finally:
                    os.close(parent)

    def extract(self, stream: Any, holder: str, progress: Callable[[int], None] | None) -> None:
        """Write the files of the tree held by `holder` from its tar `stream`; refuse a member
        the tree does not list as it is, and a listed file the stream lacks."""
        wanted = {
            p for p, e in self.entries.items() if e.type is EntryType.FILE and e.holder == holder
        }
        try:
            with tarfile.open(fileobj=stream, mode="r|", bufsize=64 * 1024) as archive:
                for member in archive:
                    self._member(archive, member, wanted, holder, progress)
        except tarfile.TarError as exc:
            raise IntegrityError(f"data of backup {holder} is not a valid tar: {exc}") from None
        missing = wanted - self.written
        if missing:
            raise IntegrityError(f"backup {holder} lacks {len(missing)} files, e.g. {min(missing)}")

    def _member(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        wanted: set[str],
        holder: str,
        progress: Callable[[int], None] | None,
    ) -> None:
        name = member.name.rstrip("/") if member.isdir() else member.name
        check_path(name)
        entry = self.entries.get(name)
        if (
            member.isdev()
            or member.islnk()
            or not (member.isreg() or member.isdir() or member.issym())
        ):
            raise IntegrityError(f"backup {holder} holds a forbidden member {name!r}")
        if entry is None:
            return  # a path of an earlier state, gone since: the tree decides what exists
        expected = {EntryType.FILE: member.isreg(), EntryType.DIR: member.isdir()}
        if not expected.get(entry.type, member.issym()):
            if member.isreg() and name in wanted:
                raise IntegrityError(f"backup {holder}: {name!r} is not what its tree says")
            return
        if not member.isreg() or name not in wanted:
            return
        if member.size != entry.size:
            raise IntegrityError(
                f"backup {holder}: {name!r} has {member.size} bytes, not {entry.size}"
            )
        source = archive.extractfile(member)
        if source is None:
            raise IntegrityError(f"backup {holder}: {name!r} has no content")
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if self.force else os.O_EXCL)
        try:
            fd = _open_beneath(self._root, name, flags)
        except FileExistsError:
            raise BackupError(Reason.REFUSED, f"{name} exists in the destination") from None
        except OSError as exc:
            raise BackupError(Reason.REFUSED, f"cannot write {name}: {exc.strerror}") from None
        digest = content_hash()
        try:
            while data := source.read(READ_BYTES):
                digest.update(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if progress is not None:
                    progress(len(data))
        finally:
            os.close(fd)
        if digest.hexdigest() != entry.digest:
            raise IntegrityError(f"backup {holder}: {name!r} does not match its hash")
        self.written.add(name)

    def links(self) -> None:
        """Create the tree's symbolic links (after every file: nothing is written through one)."""
        for entry in self.entries.values():
            if entry.type is EntryType.LINK:
                parent, name = _parent_fd(self._root, entry.path)
                try:
                    if self.force:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(name, dir_fd=parent)
                    os.symlink(entry.target, name, dir_fd=parent)
                finally:
                    os.close(parent)

    def metadata(self) -> None:
        """Mode, owner (as root) and mtime of every entry; directories last, deepest first, so
        that writing into them does not move their mtime again."""
        ordered = sorted(
            self.entries.values(),
            key=lambda e: (e.type is EntryType.DIR, -e.path.count("/")),
        )
        for entry in ordered:
            parent, name = _parent_fd(self._root, entry.path)
            try:
                link = entry.type is EntryType.LINK
                if self._owner:
                    os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
                if not link:
                    os.chmod(name, entry.mode, dir_fd=parent)
                times = (entry.mtime_ns, entry.mtime_ns)
                os.utime(name, ns=times, dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)

    def __enter__(self) -> TreeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
