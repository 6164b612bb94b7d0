"""A directory tree as a backup sees it: one entry per path (type, mode, owner, mtime, size,
BLAKE3 hash of a file's content, a link's target, and which backup holds the content), scanned from
disk and compared with an earlier backup's tree to find what changed.

A tree is the whole state of a moment, deletions included: restoring a backup writes exactly the
entries of its tree, each file's content taken from the backup named in `holder`.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import operator
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import orjson

from agent.backup.errors import BackupError, IntegrityError, Reason


class EntryType(enum.StrEnum):
    """What a path is. Sockets, pipes and devices are never backed up."""

    FILE = "f"
    DIR = "d"
    LINK = "l"


_FILE = EntryType.FILE
_name = operator.attrgetter("name")
S_IMODE, S_ISDIR, S_ISLNK, S_ISREG = stat.S_IMODE, stat.S_ISDIR, stat.S_ISLNK, stat.S_ISREG


# Not frozen, though never changed once made: a frozen dataclass sets each field through
# object.__setattr__, and a backup makes an entry twice per file (scanned, then stored with its
# hash): 2.4 µs of a small file's 30 in the thread that bounds a backup of many small files.
@dataclasses.dataclass(slots=True)
class Entry:
    """One path of a tree (relative, POSIX, never `.`, `..` or absolute)."""

    path: str
    type: EntryType
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    digest: str = ""
    """A file's content hash: BLAKE3, hex (see `files.content_hash`)."""
    target: str = ""
    """A symbolic link's target, as written (may be absolute: it is never followed)."""
    holder: str = ""
    """The backup whose data holds this file's content."""

    def same_state(self, other: Entry) -> bool:
        """Whether size, mtime, mode, owner, type and target are unchanged (content is then
        taken to be unchanged, as tar and pgBackRest do unless asked to rehash)."""
        return (
            self.type == other.type
            and self.size == other.size
            and self.mtime_ns == other.mtime_ns
            and self.mode == other.mode
            and self.uid == other.uid
            and self.gid == other.gid
            and self.target == other.target
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Skipped:
    """What a scan left out, counted for the backup's details."""

    special: int = 0
    """Sockets, pipes and devices."""
    other_filesystem: int = 0
    """Mount points below the source, with `one_file_system`."""


def check_path(path: str) -> str:
    """`path` if it is a safe relative path of a tree; IntegrityError otherwise (absolute,
    `..`, `.`, empty components, NUL)."""
    if not path or "\x00" in path or path.startswith("/"):
        raise IntegrityError(f"unsafe path in a tree: {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise IntegrityError(f"unsafe path in a tree: {path!r}")
    return path


def encode(entries: Sequence[Entry]) -> bytes:
    """A tree as bytes: one JSON array of rows, each an entry's fields in their order."""
    # The rows inline (orjson writes an enum as its value): a method call per entry is a third
    # of the time for a tree of many small files.
    return orjson.dumps(
        [
            (e.path, e.type, e.mode, e.uid, e.gid, e.mtime_ns, e.size, e.digest, e.target, e.holder)
            for e in entries
        ]
    )


def decode(raw: bytes) -> list[Entry]:
    """A tree read back; IntegrityError when a row is malformed or a path unsafe or repeated,
    or a path's parent is not a directory of the tree."""
    try:
        rows = orjson.loads(raw)
        entries = [
            Entry(
                check_path(str(r[0])),
                EntryType(r[1]),
                int(r[2]),
                int(r[3]),
                int(r[4]),
                int(r[5]),
                int(r[6]),
                str(r[7]),
                str(r[8]),
                str(r[9]),
            )
            for r in rows
        ]
    except (orjson.JSONDecodeError, TypeError, ValueError, IndexError, KeyError) as exc:
        raise IntegrityError(f"tree is malformed: {exc!r}") from None
    kinds: dict[str, EntryType] = {}
    for entry in entries:
        if entry.path in kinds:
            raise IntegrityError(f"tree lists {entry.path!r} twice")
        parent = entry.path.rpartition("/")[0]
        if parent and kinds.get(parent) is not EntryType.DIR:
            raise IntegrityError(f"tree lists {entry.path!r} before its directory")
        kinds[entry.path] = entry.type
    return entries


class Scanner:
    """Lists a source directory depth first in sorted order, applying the exclusions."""

    def __init__(self, source: Path, exclude: Iterable[str] = (), one_file_system: bool = True):
        self.source = source
        self.exclude = tuple(exclude)
        self.one_file_system = one_file_system
        self.special = 0
        self.other_filesystem = 0

    def walk(self) -> Iterator[Entry]:
        """Every entry below the source (the source itself is not an entry), parents first,
        as the walk finds them."""
        try:
            root = os.stat(self.source)
        except OSError as exc:
            raise BackupError(Reason.SOURCE, f"cannot read {self.source}: {exc.strerror}") from None
        if not stat.S_ISDIR(root.st_mode):
            raise BackupError(Reason.SOURCE, f"{self.source} is not a directory")
        yield from self._walk(str(self.source), "", root.st_dev)

    def skipped(self) -> Skipped:
        """What the last scan left out."""
        return Skipped(self.special, self.other_filesystem)

    def _excluded(self, relative: str) -> bool:
        if not self.exclude:
            return False
        name = relative.rpartition("/")[2]
        return any(
            fnmatch.fnmatchcase(relative, pattern) or fnmatch.fnmatchcase(name, pattern)
            for pattern in self.exclude
        )

    def _children(self, directory: str, prefix: str) -> list[tuple[os.DirEntry[str], str]]:
        try:
            with os.scandir(directory) as it:
                children = sorted(it, key=_name)
        except OSError as exc:
            raise BackupError(Reason.SOURCE, f"cannot list {directory}: {exc.strerror}") from None
        found = [(child, prefix + child.name) for child in children]
        if self.exclude:
            found = [(child, relative) for child, relative in found if not self._excluded(relative)]
        return found

    def _walk(self, directory: str, prefix: str, device: int) -> Iterator[Entry]:
        # A stack of directory listings rather than recursion: a recursive generator hands each
        # entry up through every level above it.
        stack = [iter(self._children(directory, prefix))]
        while stack:
            found = next(stack[-1], None)
            if found is None:
                stack.pop()
                continue
            child, relative = found
            try:
                info = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since the listing: not part of this moment
            except OSError as exc:
                raise BackupError(
                    Reason.SOURCE, f"cannot stat {child.path}: {exc.strerror}"
                ) from None
            mode = info.st_mode
            if S_ISREG(mode):
                yield Entry(
                    relative,
                    _FILE,
                    S_IMODE(mode),
                    info.st_uid,
                    info.st_gid,
                    info.st_mtime_ns,
                    info.st_size,
                )
            elif S_ISLNK(mode):
                try:
                    target = os.readlink(child.path)
                except FileNotFoundError:
                    continue
                common = (S_IMODE(mode), info.st_uid, info.st_gid, info.st_mtime_ns)
                yield Entry(relative, EntryType.LINK, *common, target=target)
            elif S_ISDIR(mode):
                if self.one_file_system and info.st_dev != device:
                    self.other_filesystem += 1
                    continue
                common = (S_IMODE(mode), info.st_uid, info.st_gid, info.st_mtime_ns)
                yield Entry(relative, EntryType.DIR, *common)
                stack.append(iter(self._children(child.path, relative + "/")))
            else:
                self.special += 1


def by_path(entries: Iterable[Entry]) -> dict[str, Entry]:
    """A tree keyed by path."""
    return {e.path: e for e in entries}
